"""The events that notify a user (their push rules said "notify"), for unread counts.

Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from homeserver.storage.db import Database, opaque_text_array

# The receipts that mark notifications as read (spec: both m.read and m.read.private).
READ_RECEIPT_TYPES = ("m.read", "m.read.private")


@dataclasses.dataclass(frozen=True)
class PushAction:
    stream_ordering: int
    thread_id: str
    highlight: bool


@dataclasses.dataclass(frozen=True)
class UnreadInputs:
    """What counting a room's unread notifications for a user needs (``unread_inputs``)."""

    # Thread id ('' for unthreaded) -> the position of the user's latest read receipt.
    read_positions: dict[str, int]
    # The position of the user's current membership event (0 without one).
    joined_at: int
    evaluated_up_to: int
    # The events to evaluate, newest first.
    event_ids: list[str]
    # With event_ids only: the joined members and the current create and power levels events.
    member_count: int
    create_event: str | None
    power_levels_event: str | None
    member_event: str | None
    # The counts of the actions already stored, per thread, in the window the counts
    # cover: after the read positions (and the join) and up to the position asked for.
    stored: list[UnreadCount] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class UnreadCount:
    thread_id: str
    notifications: int
    highlights: int


def unread_inputs_ctes(first: int) -> str:
    """The common table expressions ending in ``unread_inputs``: one row per room of a
    ``unread_rooms (room_id, up_to)`` the statement defines before them, with what
    ``PushActionStore.unread_inputs`` returns (``unread_inputs_of`` reads a row). Their
    parameters are ``unread_inputs_args``, from $first on (UNREAD_INPUTS_PARAMETERS of
    them). A /sync reads them in the statement of its timelines (sync_queries.py)."""
    user, types, not_senders, limit, known_rooms, known_counts = (
        f"${first + i}" for i in range(UNREAD_INPUTS_PARAMETERS))
    # Every parameter is read through a scalar subquery: a plan made with their values
    # then costs what the generic plan does, which PostgreSQL keeps after its first runs
    # instead of planning each run afresh.
    user = f"(SELECT {user}::text)"
    return f"""
        unread_reads AS (
            SELECT room_id, thread_id, max(event_stream_ordering) AS position FROM receipts
            WHERE room_id IN (SELECT room_id FROM unread_rooms) AND user_id = {user}
            AND receipt_type = ANY({opaque_text_array(types)})
            GROUP BY room_id, thread_id
        ), unread_positions AS (
            SELECT w.room_id, w.up_to, m.event_id AS member_event, COALESCE(m.position, 0) AS joined_at,
                COALESCE((SELECT p.stream_ordering FROM push_actions_evaluated p
                          WHERE p.user_id = {user} AND p.room_id = w.room_id), 0) AS evaluated,
                COALESCE((SELECT r.position FROM unread_reads r WHERE r.room_id = w.room_id AND r.thread_id = ''), 0)
                    AS unthreaded
            FROM unread_rooms w
            -- LIMIT (one row at most, by the key): looked up room by room. Else the generic
            -- plan, taking a user's memberships for one row, reads them all for each room.
            LEFT JOIN LATERAL (
                SELECT c.event_id, e.stream_ordering AS position FROM current_state c
                JOIN events e ON e.event_id = c.event_id
                WHERE c.room_id = w.room_id AND c.type = 'm.room.member' AND c.state_key = {user}
                LIMIT 1
            ) m ON true
        ), unread_pending AS MATERIALIZED (  -- (its array is read more than once below)
            SELECT r.*, ARRAY(
                SELECT e.event_id FROM events e
                WHERE e.room_id = r.room_id AND e.stream_ordering <= r.up_to
                AND e.stream_ordering > GREATEST(r.evaluated, r.unthreaded, r.joined_at)
                AND NOT e.outlier AND e.rejected_reason IS NULL AND NOT (e.sender = ANY({opaque_text_array(not_senders)}))
                ORDER BY e.stream_ordering DESC LIMIT (SELECT {limit}::int)
            ) AS event_ids FROM unread_positions r
        ), unread_stored AS (
            -- The stored actions the counts take: those after the unthreaded receipt and
            -- the join, and after the receipt of their thread. They are all at or before
            -- the evaluated position, and the events to evaluate after it, so in this
            -- snapshot no event is in both.
            -- Room by room, on the primary key (OFFSET 0 keeps the planner from joining
            -- all the user's actions, of every room, to the rooms instead).
            SELECT p.room_id, a.thread_id, count(*) AS notifications,
                count(*) FILTER (WHERE a.highlight) AS highlights
            FROM unread_positions p
            CROSS JOIN LATERAL (
                SELECT a.thread_id, a.highlight, a.stream_ordering FROM event_push_actions a
                WHERE a.user_id = {user} AND a.room_id = p.room_id
                AND a.stream_ordering <= p.up_to AND a.stream_ordering > GREATEST(p.unthreaded, p.joined_at)
                OFFSET 0
            ) a
            WHERE a.stream_ordering > COALESCE((SELECT r.position FROM unread_reads r
                WHERE r.room_id = p.room_id AND r.thread_id = a.thread_id), 0)
            GROUP BY p.room_id, a.thread_id
        ), unread_inputs AS (
            SELECT p.room_id, p.member_event, p.joined_at, p.evaluated, p.event_ids,
                (SELECT array_agg(s.thread_id ORDER BY s.thread_id) FROM unread_stored s
                 WHERE s.room_id = p.room_id) AS stored_threads,
                (SELECT array_agg(s.notifications ORDER BY s.thread_id) FROM unread_stored s
                 WHERE s.room_id = p.room_id) AS stored_notifications,
                (SELECT array_agg(s.highlights ORDER BY s.thread_id) FROM unread_stored s
                 WHERE s.room_id = p.room_id) AS stored_highlights,
                (SELECT array_agg(r.thread_id ORDER BY r.thread_id) FROM unread_reads r WHERE r.room_id = p.room_id)
                    AS read_threads,
                (SELECT array_agg(r.position ORDER BY r.thread_id) FROM unread_reads r WHERE r.room_id = p.room_id)
                    AS read_positions,
                -- Only a room with events to evaluate needs its state. A large room's
                -- member count is not free (3 ms for 20,000 members): the caller's, known
                -- from the members it keeps in memory, is taken when it has one.
                CASE WHEN cardinality(p.event_ids) > 0 THEN COALESCE(
                    (SELECT k.n FROM unnest((SELECT {known_rooms}::text[]), (SELECT {known_counts}::bigint[])) AS k (room_id, n)
                     WHERE k.room_id = p.room_id),
                    (SELECT count(*) FROM current_state c WHERE c.room_id = p.room_id
                     AND c.type = 'm.room.member' AND c.membership = 'join')) END AS member_count,
                CASE WHEN cardinality(p.event_ids) > 0 THEN (
                    SELECT c.event_id FROM current_state c WHERE c.room_id = p.room_id
                    AND c.type = 'm.room.create' AND c.state_key = '') END AS create_event,
                CASE WHEN cardinality(p.event_ids) > 0 THEN (
                    SELECT c.event_id FROM current_state c WHERE c.room_id = p.room_id
                    AND c.type = 'm.room.power_levels' AND c.state_key = '') END AS power_levels_event
            FROM unread_pending p
        )"""


UNREAD_INPUTS_PARAMETERS = 6


def unread_inputs_args(user_id: str, not_senders: Sequence[str], limit: int,
                       member_counts: Mapping[str, int] | None = None) -> list:
    """``member_counts``: room id -> its joined members, where the caller knows it."""
    member_counts = member_counts or {}
    return [user_id, list(READ_RECEIPT_TYPES), list(not_senders), limit,
            list(member_counts), list(member_counts.values())]


def unread_inputs_of(row: Mapping[str, Any]) -> UnreadInputs:
    return UnreadInputs(
        read_positions=dict(zip(row["read_threads"] or (), row["read_positions"] or ())),
        joined_at=row["joined_at"], evaluated_up_to=row["evaluated"], event_ids=list(row["event_ids"]),
        member_count=row["member_count"] or 0, create_event=row["create_event"],
        power_levels_event=row["power_levels_event"], member_event=row["member_event"],
        stored=[UnreadCount(*c) for c in zip(
            row["stored_threads"] or (), row["stored_notifications"] or (), row["stored_highlights"] or ())],
    )


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

    # For many rooms of one user at once (a /sync response): one statement reads what
    # evaluation and the counts need, another records what evaluation found.

    async def unread_inputs(
        self, user_id: str, up_to: dict[str, int], not_senders: Sequence[str], limit: int,
        member_counts: Mapping[str, int] | None = None,
    ) -> dict[str, UnreadInputs]:
        """room id -> what counting its unread notifications up to ``up_to[room]`` needs,
        in one statement: the user's read positions, where their membership and the
        evaluation stand, the ids of the newest ``limit`` events still to evaluate (after
        all three; not sent by ``not_senders``), and for a room with such events, the
        current state evaluation reads of it."""
        room_ids = list(up_to)
        if not room_ids:
            return {}
        rows = await self.db.fetch(
            # (The arrays through scalar subqueries: a generic plan, see SyncQueries.room_reads.)
            "WITH unread_rooms AS (SELECT * FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[]))"
            " AS w (room_id, up_to)), "
            + unread_inputs_ctes(3) + " SELECT * FROM unread_inputs",
            room_ids, [up_to[r] for r in room_ids], *unread_inputs_args(user_id, not_senders, limit, member_counts),
        )
        return {r["room_id"]: unread_inputs_of(r) for r in rows}

    async def record(self, user_id: str, found: dict[str, tuple[list[PushAction], int, int]]) -> None:
        """Store what an evaluation found in some rooms (room id -> (actions, evaluated up
        to, read up to)): the actions after the read position, the evaluated positions
        moved forward, and the rows the unthreaded receipt has made read dropped. One
        statement: atomic, and one round trip.

        What it writes is derived from durable events and receipts: lost in a crash, it
        is lost together with the evaluated position, and the next count evaluates again.
        So the commit need not wait for the WAL flush (an fsync on every /sync wake).

        Nothing is written for a deactivated account: a recording written after the
        response of a /sync may come after an erasure emptied these tables (on any
        process), and would leave the user's rows behind."""
        if not found:
            return
        rooms = list(found)
        actions = [(room_id, a.stream_ordering, a.thread_id, a.highlight)
                   for room_id, (room_actions, _, read_up_to) in found.items() for a in room_actions
                   if a.stream_ordering > read_up_to]
        await self.db.execute(
            "WITH new_actions AS ("
            "  INSERT INTO event_push_actions (user_id, room_id, stream_ordering, thread_id, highlight)"
            "  SELECT $1, a.room_id, a.stream_ordering, a.thread_id, a.highlight"
            "  FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bool[])"
            "    AS a (room_id, stream_ordering, thread_id, highlight)"
            "  WHERE NOT EXISTS (SELECT 1 FROM users WHERE user_id = $1 AND deactivated)"
            "  ON CONFLICT DO NOTHING),"
            " evaluated AS ("
            "  INSERT INTO push_actions_evaluated (user_id, room_id, stream_ordering)"
            "  SELECT $1, room_id, position FROM unnest($6::text[], $7::bigint[]) AS r (room_id, position)"
            # For this statement's transaction (evaluated here since found is not empty).
            "  WHERE set_config('synchronous_commit', 'off', true) = 'off'"
            "  AND NOT EXISTS (SELECT 1 FROM users WHERE user_id = $1 AND deactivated)"
            "  ON CONFLICT (user_id, room_id) DO UPDATE"
            "  SET stream_ordering = GREATEST(push_actions_evaluated.stream_ordering, EXCLUDED.stream_ordering))"
            # Its snapshot does not see the INSERT's rows: the actions already read were left out.
            " DELETE FROM event_push_actions a USING unnest($6::text[], $8::bigint[]) AS r (room_id, position)"
            " WHERE a.user_id = $1 AND a.room_id = r.room_id AND a.stream_ordering <= r.position",
            user_id, [a[0] for a in actions], [a[1] for a in actions], [a[2] for a in actions],
            [a[3] for a in actions], rooms, [found[r][1] for r in rooms], [found[r][2] for r in rooms],
        )
