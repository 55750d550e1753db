"""Refresh tokens (rotated by POST /refresh) and single-use login tokens (m.login.token).

Only SHA-256 hashes of either are stored. A refresh token belongs to a device and
dies with it (foreign key, ON DELETE CASCADE), taking its access token along.
"""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class RefreshToken:
    id: int
    user_id: str
    device_id: str
    replaced_by: int | None


class RefreshTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, token_hash: bytes) -> RefreshToken | None:
        row = await self.db.fetchrow(
            "SELECT id, user_id, device_id, replaced_by FROM refresh_tokens WHERE token_hash = $1", token_hash
        )
        return RefreshToken(**dict(row)) if row else None

    async def rotate(self, old: RefreshToken, refresh_hash: bytes, access_hash: bytes,
                     expires_ts: int, now: int) -> bool:
        """Issue the successor pair of ``old``; False if ``old`` is gone meanwhile.

        ``old`` stays usable until the new access token is first used (retire_predecessors).
        An earlier successor never used is dropped: only the newest answer of /refresh counts.
        """
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT replaced_by FROM refresh_tokens WHERE id = $1 FOR UPDATE", old.id)
            if row is None:
                return False
            if row["replaced_by"] is not None:
                await conn.execute("DELETE FROM refresh_tokens WHERE id = $1", row["replaced_by"])
            new_id = await conn.fetchval(
                "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)"
                " VALUES ($1, $2, $3, $4) RETURNING id",
                refresh_hash, old.user_id, old.device_id, now,
            )
            await conn.execute(
                "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_id)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                access_hash, old.user_id, old.device_id, now, expires_ts, new_id,
            )
            await conn.execute("UPDATE refresh_tokens SET replaced_by = $2 WHERE id = $1", old.id, new_id)
        return True

    async def retire_predecessors(self, refresh_token_id: int) -> list[bytes]:
        """The first use of an access token ends the refresh token it was refreshed from.

        Returns the hashes of the access tokens that died with it (to drop from caches).
        """
        async with self.db.transaction() as conn:
            old_ids = [
                row["id"] for row in await conn.fetch(
                    "SELECT id FROM refresh_tokens WHERE replaced_by = $1", refresh_token_id
                )
            ]
            if not old_ids:
                return []
            hashes = await conn.fetch(
                "SELECT token_hash FROM access_tokens WHERE refresh_token_id = ANY($1::bigint[])", old_ids
            )
            await conn.execute("DELETE FROM refresh_tokens WHERE id = ANY($1::bigint[])", old_ids)
        return [row["token_hash"] for row in hashes]


class LoginTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def create(self, token_hash: bytes, user_id: str, expires_ts: int, now: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM login_tokens WHERE expires_ts <= $1", now)
            await conn.execute(
                "INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
                token_hash, user_id, expires_ts,
            )

    async def consume(self, token_hash: bytes, now: int) -> str | None:
        """The user of a valid token, which is used up by this call; None if unknown or expired."""
        row = await self.db.fetchrow(
            "DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_id, expires_ts", token_hash
        )
        if row is None or row["expires_ts"] <= now:
            return None
        return row["user_id"]
