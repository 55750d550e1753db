"""OpenID tokens (migration 0014): their hashes, owners and expiry times."""

from __future__ import annotations

from homeserver.storage.db import Database


class OpenIdStore:
    def __init__(self, db: Database):
        self.db = db

    async def insert(self, token_hash: bytes, user_id: str, expires_ts: int, now: int) -> None:
        """Store a new token, and drop the expired ones in the same round trip."""
        await self.db.execute(
            "WITH expired AS (DELETE FROM openid_tokens WHERE expires_ts <= $4)"
            " INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
            token_hash, user_id, expires_ts, now,
        )

    async def owner(self, token_hash: bytes, now: int) -> str | None:
        """The user id of a token that has not expired and whose owner is not deactivated."""
        return await self.db.fetchval(
            "SELECT t.user_id FROM openid_tokens t JOIN users u ON u.user_id = t.user_id"
            " WHERE t.token_hash = $1 AND t.expires_ts > $2 AND NOT u.deactivated",
            token_hash, now,
        )
