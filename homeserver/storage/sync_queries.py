"""The reads of /sync for many rooms at once: one statement for all the rooms of a
response, never one per room (issue 7), so that a user in 500 rooms costs the same
number of queries as a user in 5.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from homeserver.storage.db import Database
from homeserver.storage.events import EventFilterSql, _like_patterns


@dataclasses.dataclass(frozen=True)
class RoomWindow:
    """The events of a room with after < stream_ordering <= up_to."""

    room_id: str
    after: int
    up_to: int


@dataclasses.dataclass(frozen=True)
class RoomSummary:
    joined: int
    invited: int
    # (user id, membership) of the first members but the user, joined and invited first,
    # each by the stream order of their membership event.
    candidates: tuple[tuple[str, str], ...]


class SyncQueries:
    def __init__(self, db: Database):
        self.db = db

    async def timelines(
        self, windows: Sequence[RoomWindow], limit: int, event_filter: EventFilterSql | None = None,
    ) -> dict[str, list[str]]:
        """room id -> the ids of its newest ``limit`` events in its window, newest first
        (one LATERAL index scan backwards per room, in one statement)."""
        if not windows:
            return {}
        f = event_filter or EventFilterSql()
        rows = await self.db.fetch(
            "SELECT w.room_id, e.event_id FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
            " AS w (room_id, after, up_to)"
            " CROSS JOIN LATERAL (SELECT event_id, stream_ordering FROM events"
            "  WHERE room_id = w.room_id AND stream_ordering > w.after AND stream_ordering <= w.up_to"
            "  AND NOT outlier AND rejected_reason IS NULL"
            "  AND ($5::text[] IS NULL OR type LIKE ANY($5::text[]))"
            "  AND NOT (type LIKE ANY($6::text[]))"
            "  AND ($7::text[] IS NULL OR sender = ANY($7::text[]))"
            "  AND NOT (sender = ANY($8::text[]))"
            "  AND NOT (state_key IS NULL AND sender = ANY($9::text[]))"
            "  ORDER BY stream_ordering DESC LIMIT $4) e"
            " ORDER BY w.room_id, e.stream_ordering DESC",
            [w.room_id for w in windows], [w.after for w in windows], [w.up_to for w in windows], limit,
            _like_patterns(f.types), _like_patterns(f.not_types) or [],
            list(f.senders) if f.senders is not None else None, list(f.not_senders),
            list(f.ignored_senders),
        )
        out: dict[str, list[str]] = {w.room_id: [] for w in windows}
        for r in rows:
            out[r["room_id"]].append(r["event_id"])
        return out

    async def state_groups_at(self, points: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """(room id, position) -> the state group after the room's last event at or before
        the position (absent when the room has no event there)."""
        if not points:
            return {}
        rows = await self.db.fetch(
            "SELECT p.room_id, p.position, e.state_group_after"
            " FROM unnest($1::text[], $2::bigint[]) AS p (room_id, position)"
            " CROSS JOIN LATERAL (SELECT state_group_after FROM events"
            "  WHERE room_id = p.room_id AND stream_ordering <= p.position"
            "  AND NOT outlier AND rejected_reason IS NULL"
            "  ORDER BY stream_ordering DESC LIMIT 1) e",
            [p[0] for p in points], [p[1] for p in points],
        )
        return {(r["room_id"], r["position"]): r["state_group_after"] for r in rows}

    async def summaries(self, room_ids: Sequence[str], user_id: str, heroes: int) -> dict[str, RoomSummary]:
        """Member counts and hero candidates of many rooms, from their current state."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(
            """
            WITH members AS (
                SELECT c.room_id, c.state_key, c.membership, row_number() OVER (
                    PARTITION BY c.room_id
                    ORDER BY (c.state_key <> $2 AND c.membership IN ('join', 'invite')) DESC,
                        c.state_key = $2, e.stream_ordering
                ) AS rank
                FROM current_state c JOIN events e ON e.event_id = c.event_id
                WHERE c.room_id = ANY($1::text[]) AND c.type = 'm.room.member'
            )
            SELECT room_id,
                count(*) FILTER (WHERE membership = 'join') AS joined,
                count(*) FILTER (WHERE membership = 'invite') AS invited,
                array_agg(state_key ORDER BY rank) FILTER (WHERE rank <= $3 AND state_key <> $2) AS ids,
                array_agg(membership ORDER BY rank) FILTER (WHERE rank <= $3 AND state_key <> $2) AS ms
            FROM members GROUP BY room_id
            """,
            list(room_ids), user_id, heroes,
        )
        out = {r: RoomSummary(0, 0, ()) for r in room_ids}
        for r in rows:
            out[r["room_id"]] = RoomSummary(
                r["joined"], r["invited"], tuple(zip(r["ids"] or (), r["ms"] or ())))
        return out

    async def membership_positions(self, user_id: str, room_ids: Sequence[str]) -> dict[str, int]:
        """room id -> the stream position of the user's current membership event."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT c.room_id, e.stream_ordering FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = ANY($1::text[]) AND c.type = 'm.room.member' AND c.state_key = $2",
            list(room_ids), user_id,
        )
        return {r["room_id"]: r["stream_ordering"] for r in rows}

    async def member_counts(self, room_ids: Sequence[str]) -> dict[str, int]:
        """room id -> its number of joined members."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT room_id, count(*) AS n FROM current_state WHERE room_id = ANY($1::text[])"
            " AND type = 'm.room.member' AND membership = 'join' GROUP BY room_id",
            list(room_ids),
        )
        return {r["room_id"]: r["n"] for r in rows}

    async def current_state_ids_for(
        self, room_ids: Sequence[str], keys: Sequence[tuple[str, str]],
    ) -> dict[str, dict[tuple[str, str], str]]:
        """room id -> the current state event ids of some (type, state_key) pairs."""
        if not room_ids or not keys:
            return {}
        rows = await self.db.fetch(
            "SELECT c.room_id, c.type, c.state_key, c.event_id FROM current_state c"
            " JOIN unnest($2::text[], $3::text[]) AS k (type, state_key)"
            " ON c.type = k.type AND c.state_key = k.state_key WHERE c.room_id = ANY($1::text[])",
            list(room_ids), [k[0] for k in keys], [k[1] for k in keys],
        )
        out: dict[str, dict[tuple[str, str], str]] = {}
        for r in rows:
            out.setdefault(r["room_id"], {})[(r["type"], r["state_key"])] = r["event_id"]
        return out
