"""Devices and the (hashed) access tokens that belong to them."""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class Device:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None


@dataclasses.dataclass(frozen=True)
class TokenOwner:
    user_id: str
    device_id: str
    is_admin: bool
    deactivated: bool
    suspended: bool = False
    locked: bool = False
    # Set only for tokens issued with a refresh token (refresh_tokens.py).
    expires_ts: int | None = None
    refresh_token_id: int | None = None
    # The device's last use as stored (AccountService.record_seen writes it at most every
    # few minutes): read with the token, so that a restart does not rewrite it at once.
    last_seen_ts: int | None = None
    last_seen_ip: str | None = None


class DeviceStore:
    def __init__(self, db: Database):
        self.db = db

    async def create_device_with_token(
        self, user_id: str, device_id: str, display_name: str | None, token_hash: bytes, now: int,
        refresh_hash: bytes | None = None, expires_ts: int | None = None,
    ) -> None:
        """Create (or reuse) a device and give it a new access token.

        Logging in again with the same device id replaces the device's old tokens,
        as the spec asks, and keeps its display name: initial_device_display_name
        is ignored for a known device. With refresh_hash, a refresh token is stored
        beside the access token, which then expires at expires_ts.
        """
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts)"
                " VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (user_id, device_id) DO NOTHING",
                user_id, device_id, display_name, now,
            )
            await conn.execute(
                "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )
            await conn.execute(
                "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )
            refresh_id = None
            if refresh_hash is not None:
                refresh_id = await conn.fetchval(
                    "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)"
                    " VALUES ($1, $2, $3, $4) RETURNING id",
                    refresh_hash, user_id, device_id, now,
                )
            await conn.execute(
                "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_id)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                token_hash, user_id, device_id, now, expires_ts, refresh_id,
            )

    async def get_token_owner(self, token_hash: bytes) -> TokenOwner | None:
        row = await self.db.fetchrow(
            "SELECT t.user_id, t.device_id, u.is_admin, u.deactivated, u.suspended, u.locked,"
            " t.expires_ts, t.refresh_token_id, d.last_seen_ts, d.last_seen_ip"
            " FROM access_tokens t JOIN users u USING (user_id)"
            " LEFT JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id"
            " WHERE t.token_hash = $1",
            token_hash,
        )
        return TokenOwner(**dict(row)) if row else None

    async def token_hashes_of_device(self, user_id: str, device_id: str) -> list[bytes]:
        rows = await self.db.fetch(
            "SELECT token_hash FROM access_tokens WHERE user_id = $1 AND device_id = $2",
            user_id, device_id,
        )
        return [row["token_hash"] for row in rows]

    async def token_hashes_of_user(self, user_id: str) -> list[bytes]:
        rows = await self.db.fetch("SELECT token_hash FROM access_tokens WHERE user_id = $1", user_id)
        return [row["token_hash"] for row in rows]

    async def delete_token(self, token_hash: bytes) -> None:
        await self.db.execute("DELETE FROM access_tokens WHERE token_hash = $1", token_hash)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and, by cascade, their access tokens."""
        await self.db.execute(
            "DELETE FROM devices WHERE user_id = $1 AND device_id = ANY($2::text[])", user_id, device_ids
        )

    async def delete_tokens_except(self, user_id: str, keep_device_id: str | None) -> None:
        await self.db.execute(
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id IS DISTINCT FROM $2",
            user_id, keep_device_id,
        )

    async def list_devices(self, user_id: str) -> list[Device]:
        rows = await self.db.fetch(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = $1 ORDER BY device_id",
            user_id,
        )
        return [Device(**dict(row)) for row in rows]

    async def get_device(self, user_id: str, device_id: str) -> Device | None:
        row = await self.db.fetchrow(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = $1 AND device_id = $2",
            user_id, device_id,
        )
        return Device(**dict(row)) if row else None

    async def rename_device(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        status = await self.db.execute(
            "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
            user_id, device_id, display_name,
        )
        return status != "UPDATE 0"

    async def record_seen(self, user_id: str, device_id: str, ip: str, now: int) -> None:
        await self.db.execute(
            "UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4 WHERE user_id = $1 AND device_id = $2",
            user_id, device_id, now, ip,
        )
