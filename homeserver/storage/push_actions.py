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

    # The same for many rooms of one user at once (a /sync response).

    async def evaluated_up_to_many(self, user_id: str, room_ids: list[str]) -> dict[str, int]:
        rows = await self.db.fetch(
            "SELECT room_id, stream_ordering FROM push_actions_evaluated"
            " WHERE user_id = $1 AND room_id = ANY($2::text[])",
            user_id, room_ids,
        )
        return {r["room_id"]: r["stream_ordering"] for r in rows}

    async def read_positions_many(self, user_id: str, room_ids: list[str]) -> dict[str, dict[str, int]]:
        """room id -> ``read_positions`` of that room."""
        rows = await self.db.fetch(
            "SELECT room_id, thread_id, max(event_stream_ordering) AS position FROM receipts"
            " WHERE room_id = ANY($1::text[]) AND user_id = $2 AND receipt_type = ANY($3::text[])"
            " GROUP BY room_id, thread_id",
            room_ids, user_id, list(READ_RECEIPT_TYPES),
        )
        out: dict[str, dict[str, int]] = {r: {} for r in room_ids}
        for r in rows:
            out[r["room_id"]][r["thread_id"]] = r["position"]
        return out

    async def record_many(
        self, user_id: str, found: dict[str, tuple[list[PushAction], int, int]],
    ) -> None:
        """``record`` for several rooms at once: room id -> (actions, evaluated up to, read up to)."""
        if not found:
            return
        room_ids = list(found)
        # One statement (atomic, one round trip). Its parts see one snapshot, so the DELETE
        # cannot see this INSERT's rows: actions already read are left out of the INSERT instead.
        actions = [(room_id, a.stream_ordering, a.thread_id, a.highlight)
                   for room_id, (room_actions, _, read_up_to) in found.items() for a in room_actions
                   if a.stream_ordering > read_up_to]
        await self.db.execute(
            "WITH new_actions AS ("
            "  INSERT INTO event_push_actions (user_id, room_id, stream_ordering, thread_id, highlight)"
            "  SELECT $1, a.room_id, a.stream_ordering, a.thread_id, a.highlight"
            "  FROM unnest($5::text[], $6::bigint[], $7::text[], $8::bool[])"
            "    AS a (room_id, stream_ordering, thread_id, highlight)"
            "  ON CONFLICT DO NOTHING),"
            " evaluated AS ("
            "  INSERT INTO push_actions_evaluated (user_id, room_id, stream_ordering)"
            "  SELECT $1, room_id, position FROM unnest($2::text[], $3::bigint[]) AS r (room_id, position)"
            "  ON CONFLICT (user_id, room_id) DO UPDATE"
            "  SET stream_ordering = GREATEST(push_actions_evaluated.stream_ordering, EXCLUDED.stream_ordering))"
            " DELETE FROM event_push_actions a USING unnest($2::text[], $4::bigint[]) AS r (room_id, position)"
            " WHERE a.user_id = $1 AND a.room_id = r.room_id AND a.stream_ordering <= r.position",
            user_id, room_ids, [found[r][1] for r in room_ids], [found[r][2] for r in room_ids],
            [a[0] for a in actions], [a[1] for a in actions], [a[2] for a in actions], [a[3] for a in actions],
        )

    async def unread_counts_many(
        self, user_id: str, up_to: dict[str, int], read_positions: dict[str, dict[str, int]],
    ) -> dict[str, list[UnreadCount]]:
        """``unread_counts`` of many rooms: room id -> its counts per thread."""
        room_ids = list(up_to)
        thread_rows = [(r, t, p) for r in room_ids for t, p in read_positions.get(r, {}).items() if t]
        rows = await self.db.fetch(
            "SELECT a.room_id, a.thread_id, count(*) AS notifications,"
            " count(*) FILTER (WHERE a.highlight) AS highlights"
            " FROM event_push_actions a"
            " JOIN unnest($2::text[], $3::bigint[], $4::bigint[]) AS w (room_id, up_to, unthreaded)"
            " ON w.room_id = a.room_id"
            " LEFT JOIN unnest($5::text[], $6::text[], $7::bigint[]) AS r (room_id, thread_id, position)"
            " ON r.room_id = a.room_id AND r.thread_id = a.thread_id"
            " WHERE a.user_id = $1 AND a.stream_ordering <= w.up_to"
            " AND a.stream_ordering > w.unthreaded AND a.stream_ordering > COALESCE(r.position, 0)"
            " GROUP BY a.room_id, a.thread_id",
            user_id, room_ids, [up_to[r] for r in room_ids],
            [read_positions.get(r, {}).get("", 0) for r in room_ids],
            [t[0] for t in thread_rows], [t[1] for t in thread_rows], [t[2] for t in thread_rows],
        )
        out: dict[str, list[UnreadCount]] = {r: [] for r in room_ids}
        for r in rows:
            out[r["room_id"]].append(UnreadCount(r["thread_id"], r["notifications"], r["highlights"]))
        return out
