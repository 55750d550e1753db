"""Protection of local media from quarantine and from the deletion of old media (table
media_protected, migration 0024), set by server admins."""

from __future__ import annotations

from homeserver.storage.db import Database


class MediaProtectionStore:
    def __init__(self, db: Database):
        self.db = db

    async def protect(self, media_id: str, by: str, now: int) -> bool:
        """False when there is no such local media."""
        status = await self.db.execute(
            "INSERT INTO media_protected (media_id, protected_by, protected_ts)"
            " SELECT media_id, $2, $3 FROM media WHERE media_id = $1"
            " ON CONFLICT (media_id) DO NOTHING",
            media_id, by, now,
        )
        return status != "INSERT 0 0" or await self._exists(media_id)

    async def unprotect(self, media_id: str) -> bool:
        """False when there is no such local media."""
        await self.db.execute("DELETE FROM media_protected WHERE media_id = $1", media_id)
        return await self._exists(media_id)

    async def protected_among(self, media_ids: list[str]) -> set[str]:
        """Which of these local media ids are protected."""
        if not media_ids:
            return set()
        rows = await self.db.fetch(
            "SELECT media_id FROM media_protected WHERE media_id = ANY($1::text[])", media_ids
        )
        return {row["media_id"] for row in rows}

    async def unprotected_media_of_user(self, user_id: str) -> list[str]:
        """A local user's media not quarantined yet and not protected (for the bulk quarantine)."""
        rows = await self.db.fetch(
            "SELECT m.media_id FROM media m WHERE m.user_id = $1 AND m.quarantined_by IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM media_protected p WHERE p.media_id = m.media_id)"
            " ORDER BY m.created_ts, m.media_id",
            user_id,
        )
        return [row["media_id"] for row in rows]

    async def _exists(self, media_id: str) -> bool:
        return await self.db.fetchval("SELECT EXISTS (SELECT 1 FROM media WHERE media_id = $1)", media_id)
