"""Rooms, their aliases, and the rooms a user has forgotten."""

from __future__ import annotations

import asyncpg

from homeserver.storage.db import Database


class RoomStore:
    def __init__(self, db: Database):
        self.db = db

    async def insert_room(
        self, conn: asyncpg.Connection, room_id: str, room_version: str, creator: str, now: int, is_public: bool
    ) -> None:
        await conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public)"
            " VALUES ($1, $2, $3, $4, $5)",
            room_id, room_version, creator, now, is_public,
        )

    async def room_exists(self, room_id: str) -> bool:
        return bool(await self.db.fetchval("SELECT 1 FROM rooms WHERE room_id = $1", room_id))

    # Aliases

    async def create_alias(self, alias: str, room_id: str, creator: str) -> bool:
        try:
            await self.db.execute(
                "INSERT INTO room_aliases (room_alias, room_id, creator) VALUES ($1, $2, $3)",
                alias, room_id, creator,
            )
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def insert_alias(self, conn: asyncpg.Connection, alias: str, room_id: str, creator: str) -> None:
        await conn.execute(
            "INSERT INTO room_aliases (room_alias, room_id, creator) VALUES ($1, $2, $3)",
            alias, room_id, creator,
        )

    async def get_alias(self, alias: str) -> tuple[str, str] | None:
        """(room id, creator) of an alias."""
        row = await self.db.fetchrow("SELECT room_id, creator FROM room_aliases WHERE room_alias = $1", alias)
        return (row["room_id"], row["creator"]) if row else None

    async def delete_alias(self, alias: str) -> None:
        await self.db.execute("DELETE FROM room_aliases WHERE room_alias = $1", alias)

    async def aliases_of_room(self, room_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT room_alias FROM room_aliases WHERE room_id = $1 ORDER BY room_alias", room_id
        )
        return [row["room_alias"] for row in rows]

    # Forgetting

    async def forget(self, user_id: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO room_forgotten (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            user_id, room_id,
        )

    async def unforget(self, conn: asyncpg.Connection, user_id: str, room_id: str) -> None:
        await conn.execute("DELETE FROM room_forgotten WHERE user_id = $1 AND room_id = $2", user_id, room_id)

    async def forgotten_rooms(self, user_id: str) -> set[str]:
        rows = await self.db.fetch("SELECT room_id FROM room_forgotten WHERE user_id = $1", user_id)
        return {row["room_id"] for row in rows}
