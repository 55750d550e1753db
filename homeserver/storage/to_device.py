"""To-device messages, queued per device on the to-device stream until delivered."""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.db import Database

JsonDict = dict[str, Any]


class ToDeviceStore:
    def __init__(self, db: Database):
        self.db = db

    async def max_position(self) -> int:
        # Delivered messages are deleted; the kept transaction ids remember the highest position.
        return await self.db.fetchval(
            "SELECT GREATEST((SELECT max(stream_id) FROM to_device_messages),"
            " (SELECT max(stream_id) FROM to_device_txns), 0)"
        )

    async def txn_position(self, user_id: str, device_id: str, txn_id: str) -> int | None:
        return await self.db.fetchval(
            "SELECT stream_id FROM to_device_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
            user_id, device_id, txn_id,
        )

    async def queue(
        self, sender: tuple[str, str], txn_id: str, messages: list[tuple[str, str | None, JsonDict]], position: int,
    ) -> bool:
        """Queue (user, device or None for all devices, message) for existing devices, once per txn id.

        False when the sender's transaction id was already used (nothing is queued again).
        """
        async with self.db.transaction() as conn:
            status = await conn.execute(
                "INSERT INTO to_device_txns (user_id, device_id, txn_id, stream_id) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING",
                sender[0], sender[1], txn_id, position,
            )
            if status != "INSERT 0 1":
                return False
            for user_id, device_id, message in messages:
                # Devices that do not exist get nothing, as in Synapse.
                await conn.execute(
                    "INSERT INTO to_device_messages (stream_id, user_id, device_id, message_json)"
                    " SELECT $1, user_id, device_id, $4 FROM devices"
                    " WHERE user_id = $2 AND ($3::text IS NULL OR device_id = $3)"
                    " ON CONFLICT DO NOTHING",
                    position, user_id, device_id, json.dumps(message),
                )
        return True

    async def recipients(self, position: int) -> list[str]:
        rows = await self.db.fetch("SELECT DISTINCT user_id FROM to_device_messages WHERE stream_id = $1", position)
        return [r["user_id"] for r in rows]

    async def acknowledge_and_read(
        self, user_id: str, device_id: str, after: int, up_to: int, limit: int,
    ) -> list[tuple[int, JsonDict]]:
        """Delete the messages up to ``after`` (the client has them) and read those after it,
        in one round trip: /sync does this on every call."""
        rows = await self.db.fetch(
            "WITH acknowledged AS ("
            "  DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3)"
            " SELECT stream_id, message_json FROM to_device_messages"
            " WHERE user_id = $1 AND device_id = $2 AND stream_id > $3 AND stream_id <= $4"
            " ORDER BY stream_id LIMIT $5",
            user_id, device_id, after, up_to, limit,
        )
        return [(r["stream_id"], json.loads(r["message_json"])) for r in rows]

    async def messages(
        self, user_id: str, device_id: str, after: int, up_to: int, limit: int,
    ) -> list[tuple[int, JsonDict]]:
        rows = await self.db.fetch(
            "SELECT stream_id, message_json FROM to_device_messages"
            " WHERE user_id = $1 AND device_id = $2 AND stream_id > $3 AND stream_id <= $4"
            " ORDER BY stream_id LIMIT $5",
            user_id, device_id, after, up_to, limit,
        )
        return [(r["stream_id"], json.loads(r["message_json"])) for r in rows]
