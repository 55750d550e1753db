"""Sync filters uploaded by clients, kept as the JSON they sent."""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.db import Database


class FilterStore:
    def __init__(self, db: Database):
        self.db = db

    async def add(self, user_id: str, filter_json: dict[str, Any]) -> int:
        text = json.dumps(filter_json, sort_keys=True)
        async with self.db.transaction() as conn:
            # Re-uploading the same filter returns the same id, as Synapse does.
            existing = await conn.fetchval(
                "SELECT filter_id FROM filters WHERE user_id = $1 AND filter_json = $2", user_id, text
            )
            if existing is not None:
                return existing
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "filters:" + user_id)
            filter_id = await conn.fetchval(
                "SELECT COALESCE(max(filter_id) + 1, 0) FROM filters WHERE user_id = $1", user_id
            )
            await conn.execute(
                "INSERT INTO filters (user_id, filter_id, filter_json) VALUES ($1, $2, $3)",
                user_id, filter_id, text,
            )
            return filter_id

    async def get(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        text = await self.db.fetchval(
            "SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2", user_id, filter_id
        )
        return json.loads(text) if text is not None else None
