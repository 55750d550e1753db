"""Account data, global (room_id '') and per room, on its own stream."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from homeserver.storage.db import Database

GLOBAL = ""


class AccountDataStore:
    def __init__(self, db: Database):
        self.db = db

    async def put(
        self, user_id: str, room_id: str, data_type: str, content: dict[str, Any], stream_id: int,
        conn: asyncpg.Connection | None = None,
    ) -> None:
        """Store one item; with ``conn``, inside the caller's transaction (server-managed
        types such as m.push_rules are written with the change they announce)."""
        await (conn or self.db).execute(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_id) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (user_id, room_id, type) DO UPDATE"
            " SET content = EXCLUDED.content, stream_id = EXCLUDED.stream_id",
            user_id, room_id, data_type, json.dumps(content), stream_id,
        )

    async def get(self, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
        content = await self.db.fetchval(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
            user_id, room_id, data_type,
        )
        return json.loads(content) if content is not None else None

    async def changed_since(self, user_id: str, after: int, up_to: int) -> dict[str, dict[str, dict[str, Any]]]:
        """room id ('' for global) -> type -> content, for data changed in the window."""
        if after >= up_to:
            return {}
        return await self._by_room("stream_id > $2 AND stream_id <= $3", user_id, after, up_to)

    async def of_rooms(self, user_id: str, room_ids: list[str], up_to: int) -> dict[str, dict[str, dict[str, Any]]]:
        """room id -> type -> content, for all the data of these rooms written up to ``up_to``."""
        if not room_ids:
            return {}
        return await self._by_room("room_id = ANY($2::text[]) AND stream_id <= $3", user_id, room_ids, up_to)

    async def _by_room(self, condition: str, user_id: str, *args: Any) -> dict[str, dict[str, dict[str, Any]]]:
        """The user's items that meet ``condition`` (on $2 and after), by room and type."""
        rows = await self.db.fetch(
            "SELECT room_id, type, content FROM account_data WHERE user_id = $1 AND " + condition, user_id, *args)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for row in rows:
            out.setdefault(row["room_id"], {})[row["type"]] = json.loads(row["content"])
        return out
