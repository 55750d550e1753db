"""Read receipts, one row per room, type, user and thread, on their own stream."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from homeserver.storage.db import Database

# thread_id of an unthreaded receipt.
UNTHREADED = ""


@dataclasses.dataclass(frozen=True)
class Receipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str
    event_id: str
    ts: int


class ReceiptStore:
    def __init__(self, db: Database):
        self.db = db

    async def put(self, receipt: Receipt, event_stream_ordering: int, stream_id: int) -> bool:
        """Store a receipt unless the one stored is for a later event; True if stored."""
        status = await self.db.execute(
            "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id,"
            " event_stream_ordering, ts, stream_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE"
            " SET event_id = EXCLUDED.event_id, event_stream_ordering = EXCLUDED.event_stream_ordering,"
            " ts = EXCLUDED.ts, stream_id = EXCLUDED.stream_id"
            " WHERE receipts.event_stream_ordering < EXCLUDED.event_stream_ordering",
            receipt.room_id, receipt.receipt_type, receipt.user_id, receipt.thread_id, receipt.event_id,
            event_stream_ordering, receipt.ts, stream_id,
        )
        return status.endswith(" 1")

    async def get(self, room_id: str, receipt_type: str, user_id: str, thread_id: str) -> Receipt | None:
        row = await self.db.fetchrow(
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"
            " WHERE room_id = $1 AND receipt_type = $2 AND user_id = $3 AND thread_id = $4",
            room_id, receipt_type, user_id, thread_id,
        )
        return Receipt(**dict(row)) if row else None

    async def in_rooms(
        self, room_ids: Sequence[str], after: int, up_to: int, private_type: str, reader: str,
    ) -> list[Receipt]:
        """The receipts of these rooms written in the window (after, up_to], leaving out
        the receipts of ``private_type`` of anyone but ``reader``."""
        rows = await self.db.fetch(
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"
            " WHERE room_id = ANY($1::text[]) AND stream_id > $2 AND stream_id <= $3"
            " AND (receipt_type <> $4 OR user_id = $5)"
            " ORDER BY stream_id",
            list(room_ids), after, up_to, private_type, reader,
        )
        return [Receipt(**dict(row)) for row in rows]
