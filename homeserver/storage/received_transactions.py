"""Transactions received over federation and the answer we gave, for idempotent retries."""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.db import Database


class ReceivedTransactionStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_response(self, origin: str, txn_id: str) -> dict[str, Any] | None:
        text = await self.db.fetchval(
            "SELECT response_json FROM received_transactions WHERE origin = $1 AND txn_id = $2", origin, txn_id
        )
        return json.loads(text) if text is not None else None

    async def store_response(self, origin: str, txn_id: str, response: dict[str, Any], now: int) -> None:
        await self.db.execute(
            "INSERT INTO received_transactions (origin, txn_id, response_json, received_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            origin, txn_id, json.dumps(response), now,
        )

    async def delete_older_than(self, ts: int) -> None:
        await self.db.execute("DELETE FROM received_transactions WHERE received_ts < $1", ts)
