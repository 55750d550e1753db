"""Queries behind the admin media API: usage per user, listing, purge candidates, quarantine.

The rows themselves belong to homeserver.storage.media; deleting a row and its
file goes through MediaStore.delete_local and the content lock there.
"""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database

# Sort keys the API accepts, mapped to SQL. Never interpolate anything else.
USAGE_ORDER = {
    "user_id": "u.user_id",
    "displayname": "p.displayname",
    "media_length": "u.media_length",
    "media_count": "u.media_count",
}
USER_MEDIA_ORDER = {
    "media_id": "media_id",
    "upload_name": "upload_name",
    "created_ts": "created_ts",
    "last_access_ts": "last_access_ts",
    "media_length": "size",
    "media_type": "content_type",
    "quarantined_by": "quarantined_by",
    # Protected from quarantine (migrations/0024: media_protected) first when descending.
    "safe_from_quarantine": "EXISTS (SELECT 1 FROM media_protected p WHERE p.media_id = media.media_id)::int",
}


@dataclasses.dataclass(frozen=True)
class UserUsage:
    user_id: str
    displayname: str | None
    media_count: int
    media_length: int


@dataclasses.dataclass(frozen=True)
class UserMediaItem:
    media_id: str
    upload_name: str | None
    created_ts: int
    last_access_ts: int | None
    media_length: int
    media_type: str
    quarantined_by: str | None


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class MediaAdminStore:
    def __init__(self, db: Database):
        self.db = db

    async def usage_by_user(
        self, *, order_by: str, descending: bool, limit: int, offset: int,
        from_ts: int | None, until_ts: int | None, search_term: str | None,
    ) -> tuple[list[UserUsage], int]:
        """Uploaded local media per user: (one page, number of users in all)."""
        direction = "DESC" if descending else "ASC"
        base = """
            WITH u AS (
                SELECT user_id, count(*) AS media_count, sum(size)::bigint AS media_length
                FROM media
                WHERE sha256 IS NOT NULL
                  AND ($1::bigint IS NULL OR created_ts >= $1)
                  AND ($2::bigint IS NULL OR created_ts <= $2)
                GROUP BY user_id
            )
            SELECT {columns} FROM u LEFT JOIN profiles p ON p.user_id = u.user_id
            WHERE $3::text IS NULL
               OR lower(split_part(substr(u.user_id, 2), ':', 1)) LIKE lower($3)
               OR lower(p.displayname) LIKE lower($3)
        """
        pattern = _like_pattern(search_term) if search_term is not None else None
        total = await self.db.fetchval(base.format(columns="count(*)"), from_ts, until_ts, pattern)
        rows = await self.db.fetch(
            base.format(columns="u.user_id, p.displayname, u.media_count, u.media_length")
            + f" ORDER BY {USAGE_ORDER[order_by]} {direction}, u.user_id {direction} LIMIT $4 OFFSET $5",
            from_ts, until_ts, pattern, limit, offset,
        )
        return [UserUsage(**dict(row)) for row in rows], total

    async def user_media(
        self, user_id: str, *, order_by: str, descending: bool, limit: int, offset: int,
    ) -> tuple[list[UserMediaItem], int]:
        """A user's uploaded local media: (one page, count in all)."""
        direction = "DESC" if descending else "ASC"
        total = await self.db.fetchval(
            "SELECT count(*) FROM media WHERE user_id = $1 AND sha256 IS NOT NULL", user_id
        )
        rows = await self.db.fetch(
            "SELECT media_id, upload_name, created_ts, last_access_ts, size AS media_length,"
            " content_type AS media_type, quarantined_by FROM media"
            " WHERE user_id = $1 AND sha256 IS NOT NULL"
            # Ties are broken by media_id ascending, whatever the direction.
            f" ORDER BY {USER_MEDIA_ORDER[order_by]} {direction}, media_id ASC LIMIT $2 OFFSET $3",
            user_id, limit, offset,
        )
        return [UserMediaItem(**dict(row)) for row in rows], total

    async def local_media_to_purge(
        self, server_name: str, before_ts: int, *, by_access: bool, size_gt: int = 0,
        keep_profiles: bool = True,
    ) -> list[str]:
        """Uploaded local media larger than size_gt and, with by_access, last used (or if never
        used, uploaded) before the time, else uploaded before it. With keep_profiles, media
        serving as a user's or a room's avatar is kept."""
        rows = await self.db.fetch(
            """
            WITH kept AS (
                SELECT avatar_url AS url FROM profiles WHERE $5 AND avatar_url IS NOT NULL
                UNION
                SELECT e.json::jsonb -> 'content' ->> (CASE cs.type WHEN 'm.room.avatar' THEN 'url'
                                                       ELSE 'avatar_url' END)
                FROM current_state cs JOIN events e ON e.event_id = cs.event_id
                WHERE $5 AND cs.type IN ('m.room.avatar', 'm.room.member')
            )
            SELECT media_id FROM media m
            WHERE m.sha256 IS NOT NULL
              AND (CASE WHEN $3 THEN COALESCE(m.last_access_ts, m.created_ts) ELSE m.created_ts END) < $2
              AND m.size > $4
              AND NOT EXISTS (SELECT 1 FROM kept WHERE kept.url = 'mxc://' || $1 || '/' || m.media_id)
            ORDER BY m.created_ts
            """,
            server_name, before_ts, by_access, size_gt, keep_profiles,
        )
        return [row["media_id"] for row in rows]

    async def set_quarantine(self, origin: str | None, media_id: str, by: str | None) -> bool:
        """Quarantine (by = admin's user id) or release (by = None) one item, and every other
        local or cached remote item with the same bytes. origin None means local media.
        False when the item is unknown."""
        async with self.db.transaction() as conn:
            if origin is None:
                sha256 = await conn.fetchval(
                    "UPDATE media SET quarantined_by = $2 WHERE media_id = $1 RETURNING COALESCE(sha256, '')",
                    media_id, by,
                )
            else:
                sha256 = await conn.fetchval(
                    "UPDATE remote_media SET quarantined_by = $3 WHERE origin = $1 AND media_id = $2"
                    " RETURNING sha256",
                    origin, media_id, by,
                )
            if sha256 is None:
                return False
            if sha256:
                # Synapse does the same since 1.128: the same bytes under another id are
                # the same content; but a protected item is never quarantined, as Synapse.
                await conn.execute(
                    "UPDATE media SET quarantined_by = $2 WHERE sha256 = $1 AND ($2::text IS NULL"
                    " OR NOT EXISTS (SELECT 1 FROM media_protected p WHERE p.media_id = media.media_id))",
                    sha256, by)
                await conn.execute("UPDATE remote_media SET quarantined_by = $2 WHERE sha256 = $1", sha256, by)
            return True
