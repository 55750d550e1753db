"""The events that notify a user (their push rules said "notify"), for unread counts.

Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications
"""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database

# The receipts that mark notifications as read (spec: both m.read and m.read.private).
READ_RECEIPT_TYPES = ("m.read", "m.read.private")


@dataclasses.dataclass(frozen=True)
class PushAction:
    stream_ordering: int
    thread_id: str
    highlight: bool


@dataclasses.dataclass(frozen=True)
class UnreadCount:
    thread_id: str
    notifications: int
    highlights: int


class PushActionStore:
    def __init__(self, db: Database):
        self.db = db

    async def evaluated_up_to(self, user_id: str, room_id: str) -> int | None:
        return await self.db.fetchval(
            "SELECT stream_ordering FROM push_actions_evaluated WHERE user_id = $1 AND room_id = $2",
            user_id, room_id,
        )

    async def read_positions(self, user_id: str, room_id: str) -> dict[str, int]:
        """Thread id ('' for unthreaded) -> the stream position the user has read up to,
        the later of their m.read and m.read.private receipts (from the receipts table)."""
        rows = await self.db.fetch(
            "SELECT thread_id, max(event_stream_ordering) AS position FROM receipts"
            " WHERE room_id = $1 AND user_id = $2 AND receipt_type = ANY($3::text[]) GROUP BY thread_id",
            room_id, user_id, list(READ_RECEIPT_TYPES),
        )
        return {r["thread_id"]: r["position"] for r in rows}

    async def record(
        self, user_id: str, room_id: str, actions: list[PushAction], evaluated_up_to: int, read_up_to: int,
    ) -> None:
        """Store what an evaluation found, move the evaluated position forward, and drop
        the rows the user's unthreaded receipt has made read."""
        async with self.db.transaction() as conn:
            if actions:
                await conn.executemany(
                    "INSERT INTO event_push_actions (user_id, room_id, stream_ordering, thread_id, highlight)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    [(user_id, room_id, a.stream_ordering, a.thread_id, a.highlight) for a in actions],
                )
            await conn.execute(
                "INSERT INTO push_actions_evaluated (user_id, room_id, stream_ordering) VALUES ($1, $2, $3)"
                " ON CONFLICT (user_id, room_id) DO UPDATE"
                " SET stream_ordering = GREATEST(push_actions_evaluated.stream_ordering, EXCLUDED.stream_ordering)",
                user_id, room_id, evaluated_up_to,
            )
            await conn.execute(
                "DELETE FROM event_push_actions WHERE user_id = $1 AND room_id = $2 AND stream_ordering <= $3",
                user_id, room_id, read_up_to,
            )

    async def unread_counts(
        self, user_id: str, room_id: str, up_to: int, read_positions: dict[str, int],
    ) -> list[UnreadCount]:
        """Per thread, the notifying and highlighting events after what the user has read:
        after their unthreaded receipt and after their receipt for that thread."""
        threads = [t for t in read_positions if t]
        rows = await self.db.fetch(
            "SELECT a.thread_id, count(*) AS notifications, count(*) FILTER (WHERE a.highlight) AS highlights"
            " FROM event_push_actions a"
            " LEFT JOIN unnest($4::text[], $5::bigint[]) AS r(thread_id, position) ON r.thread_id = a.thread_id"
            " WHERE a.user_id = $1 AND a.room_id = $2 AND a.stream_ordering <= $3"
            " AND a.stream_ordering > $6 AND a.stream_ordering > COALESCE(r.position, 0)"
            " GROUP BY a.thread_id",
            user_id, room_id, up_to, threads, [read_positions[t] for t in threads], read_positions.get("", 0),
        )
        return [UnreadCount(r["thread_id"], r["notifications"], r["highlights"]) for r in rows]
