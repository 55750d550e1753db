"""Users, their profiles and their password hashes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import asyncpg

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class User:
    user_id: str
    password_hash: str | None
    is_admin: bool
    deactivated: bool
    created_ts: int
    suspended: bool = False
    locked: bool = False


class UserStore:
    def __init__(self, db: Database):
        self.db = db

    async def create_user(
        self, user_id: str, password_hash: str | None, created_ts: int, is_admin: bool = False,
        displayname: str | None = None,
    ) -> bool:
        """Create a user and its profile; False if the id is taken."""
        async with self.db.transaction() as conn:
            try:
                await conn.execute(
                    "INSERT INTO users (user_id, password_hash, is_admin, created_ts)"
                    " VALUES ($1, $2, $3, $4)",
                    user_id, password_hash, is_admin, created_ts,
                )
            except asyncpg.UniqueViolationError:
                return False
            await conn.execute(
                "INSERT INTO profiles (user_id, displayname) VALUES ($1, $2)", user_id, displayname
            )
        return True

    async def get_user(self, user_id: str) -> User | None:
        row = await self.db.fetchrow(
            "SELECT user_id, password_hash, is_admin, deactivated, created_ts, suspended, locked FROM users"
            " WHERE user_id = $1",
            user_id,
        )
        return User(**dict(row)) if row else None

    async def find_user_case_insensitive(self, user_id: str) -> list[str]:
        rows = await self.db.fetch("SELECT user_id FROM users WHERE lower(user_id) = lower($1)", user_id)
        return [row["user_id"] for row in rows]

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self.db.execute("UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash)

    async def set_deactivated(self, user_id: str) -> None:
        """Deactivate for good: no password, so no login ever again."""
        await self.db.execute(
            "UPDATE users SET deactivated = true, password_hash = NULL WHERE user_id = $1", user_id
        )

    async def set_admin(self, user_id: str, is_admin: bool) -> None:
        await self.db.execute("UPDATE users SET is_admin = $2 WHERE user_id = $1", user_id, is_admin)

    async def set_suspended(self, user_id: str, suspended: bool) -> None:
        await self.db.execute("UPDATE users SET suspended = $2 WHERE user_id = $1", user_id, suspended)

    async def set_locked(self, user_id: str, locked: bool) -> None:
        await self.db.execute("UPDATE users SET locked = $2 WHERE user_id = $1", user_id, locked)

    async def count_users(self) -> int:
        return await self.db.fetchval("SELECT count(*) FROM users")

    # Profiles

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            "SELECT displayname, avatar_url, extra FROM profiles WHERE user_id = $1", user_id
        )
        if row is None:
            return None
        profile: dict[str, Any] = json.loads(row["extra"]) if row["extra"] else {}
        if row["displayname"] is not None:
            profile["displayname"] = row["displayname"]
        if row["avatar_url"] is not None:
            profile["avatar_url"] = row["avatar_url"]
        return profile

    async def set_profile_field(self, user_id: str, field: str, value: Any) -> None:
        """Set (or with None, remove) one profile field."""
        if field in ("displayname", "avatar_url"):
            await self.db.execute(f"UPDATE profiles SET {field} = $2 WHERE user_id = $1", user_id, value)
        elif value is None:
            await self.db.execute("UPDATE profiles SET extra = extra - $2 WHERE user_id = $1", user_id, field)
        else:
            await self.db.execute(
                "UPDATE profiles SET extra = jsonb_set(extra, ARRAY[$2], $3::jsonb) WHERE user_id = $1",
                user_id, field, json.dumps(value),
            )
