"""The reads of /sync for many rooms at once: one statement for all the rooms of a
response, never one per room (issue 7), so that a user in 500 rooms costs the same
number of queries as a user in 5.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from homeserver.storage.cache import LruCache
from homeserver.storage.db import Database
from homeserver.storage.events import _FILTER_5_TO_9, EventFilterSql, _filter_args
from homeserver.storage.push_actions import (
    UNREAD_INPUTS_PARAMETERS, UnreadInputs, unread_inputs_args, unread_inputs_ctes, unread_inputs_of,
)

# room_reads: where the unread counts' parameters begin, and the one after them.
UNREAD_FIRST = 13
FILTERED = UNREAD_FIRST + UNREAD_INPUTS_PARAMETERS


# The state group after the last event at or before a position of the room of a row ``w``
# (NULL when the room has no event there).
_STATE_GROUP_AT = (
    "SELECT state_group_after FROM events"
    " WHERE room_id = w.room_id AND stream_ordering <= {position}"
    " AND NOT outlier AND rejected_reason IS NULL"
    " ORDER BY stream_ordering DESC LIMIT 1"
)


@dataclasses.dataclass(frozen=True)
class RoomWindow:
    """The events of a room with after < stream_ordering <= up_to."""

    room_id: str
    after: int
    up_to: int
    # Whether room_reads reads the state group at ``after`` too.
    state_at_after: bool = False


@dataclasses.dataclass(frozen=True)
class UnreadRequest:
    """The rooms (room id -> up to) whose unread notification counts a /sync needs, and
    the events it evaluates (PushActionStore.unread_inputs)."""

    user_id: str
    up_to: dict[str, int]
    not_senders: tuple[str, ...]
    limit: int
    # room id -> its joined members, for the rooms whose count is known in memory.
    member_counts: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RoomReads:
    # room id -> its timeline's event ids, newest first.
    timelines: dict[str, list[str]]
    # room id -> the state group before each of those events (known before they are read).
    groups_before: dict[str, list[int | None]]
    # (room id, position) -> the state group there (None: no event, or no group); at a
    # window's end only when its timeline is empty or filtered (see room_reads).
    state_groups: dict[tuple[str, int], int | None]
    unread: dict[str, UnreadInputs]


@dataclasses.dataclass(frozen=True)
class RoomSummary:
    joined: int
    invited: int
    # (user id, membership) of the first members but the user, joined and invited first,
    # each by the stream order of their membership event.
    candidates: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class MemberEvent:
    """A membership event in one of the user's rooms, in a sync's window of the event stream."""

    room_id: str
    state_key: str
    event_id: str
    stream_ordering: int
    outlier: bool
    rejected: bool


@dataclasses.dataclass(frozen=True)
class Memberships:
    """What a /sync reads first (SyncQueries.memberships)."""

    # room id -> (membership, membership event id): every room the user has a membership in.
    rooms: dict[str, tuple[str, str]]
    # The membership events of those rooms in the window, anyone's, in stream order.
    changes: list[MemberEvent]
    # The device's one-time key counts by algorithm, and its unused fallback key types.
    one_time_keys: dict[str, int]
    fallback_key_types: list[str]
    # room id -> (sender, position) of the user's membership event, when asked for.
    membership_events: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)

    def own_changes(self, user_id: str) -> dict[str, int]:
        """room id -> the position of the user's last membership event in the window (those
        rejected left out; outliers kept: an invite from another server is one)."""
        return {e.room_id: e.stream_ordering for e in self.changes if e.state_key == user_id and not e.rejected}

    def members_changed(self) -> set[tuple[str, str]]:
        """(room id, user id) of the membership events of the window in the rooms' DAGs."""
        return {(e.room_id, e.state_key) for e in self.changes if not e.outlier and not e.rejected}


# Memberships of those who are no room's members, whose first are heroes of a room with
# too few members (Synapse's order: after those joined or invited).
_ABSENT = ("leave", "ban", "knock")

# Users whose rooms are remembered between two of their syncs (as many as SyncService
# remembers devices for): a user beyond them has all their rooms read, as at first.
KNOWN_USERS = 1000


# A window of at most this many positions (or four per room of the user) is read from
# the events' side: the events in it, then whether their room is one of the user's.
SMALL_WINDOW = 100


def _window_members(first: int, events_first: bool) -> str:
    """The rows of kind 'member' of ``memberships``: the membership events in (${first},
    ${first + 1}] of the rooms of the user ($1). A long poll's wake has a window of a
    few positions: its events are read, not a probe of each of the user's rooms (500
    index probes for a user in 500 rooms); a wide window (a device back after a while)
    is read room by room. MATERIALIZED keeps the planner to that order."""
    after, up_to = f"${first}", f"${first + 1}"
    if events_first:
        return (
            " UNION ALL (WITH window_members AS MATERIALIZED (SELECT e.room_id, e.event_id, e.state_key,"
            "  e.stream_ordering, e.outlier, e.rejected_reason FROM events e"
            f"  WHERE e.stream_ordering > {after} AND e.stream_ordering <= {up_to} AND e.type = 'm.room.member')"
            " SELECT 'member', e.room_id, NULL, e.event_id, e.state_key, e.stream_ordering, e.outlier,"
            "  e.rejected_reason IS NOT NULL FROM window_members e"
            " WHERE EXISTS (SELECT 1 FROM current_state c"
            "  WHERE c.type = 'm.room.member' AND c.state_key = $1 AND c.room_id = e.room_id))")
    return (
        " UNION ALL"
        " SELECT 'member', e.room_id, NULL, e.event_id, e.state_key, e.stream_ordering, e.outlier,"
        "  e.rejected_reason IS NOT NULL FROM events e"
        " WHERE e.type = 'm.room.member' AND e.room_id IN (SELECT room_id FROM current_state"
        "   WHERE type = 'm.room.member' AND state_key = $1)"
        f"  AND e.stream_ordering > {after} AND e.stream_ordering <= {up_to}")


@dataclasses.dataclass(frozen=True)
class _KnownRooms:
    """A user's rooms (room id -> (membership, event id)) as read with every change of
    current_state at or before ``position`` in them (some later ones, maybe, too)."""

    position: int
    rooms: dict[str, tuple[str, str]]


class SyncQueries:
    def __init__(self, db: Database, known_users: int = KNOWN_USERS):
        self.db = db
        self._known: LruCache[str, _KnownRooms] = LruCache(known_users)

    async def memberships(self, user_id: str, device_id: str | None, after: int | None, up_to: int,
                          with_senders: bool = False) -> Memberships:
        """The user's rooms, the device's key counts and, with ``after``, the membership
        events of those rooms in (after, up_to]: what the user's own, the device lists and
        presence of a /sync ask of the window, in one round trip (rows told apart by kind).
        ``with_senders``: also the sender and position of the user's membership event in
        each room (what sliding sync's lists need).

        ``up_to`` is the event stream's position, below which every write has committed.
        The rooms read last time for the user stand for all of them but those whose rows
        of current_state changed since (``changed_at``, the position of each row's write):
        only these are read again, and the count of the user's rows tells whether one
        was removed meanwhile (a purged room, a state reset), which reads them all. So a
        long poll of a user in 500 rooms reads no row of them when nothing changed."""
        known = None if with_senders else self._known.get(user_id)
        result = await self._read(user_id, device_id, after, up_to, with_senders, known)
        if result is None:  # a row is gone since
            result = await self._read(user_id, device_id, after, up_to, with_senders, None)
            assert result is not None
        before = self._known.get(user_id)
        if before is None or before.position <= up_to:
            self._known.set(user_id, _KnownRooms(up_to, result.rooms))
        return result

    async def _read(self, user_id: str, device_id: str | None, after: int | None, up_to: int,
                    with_senders: bool, known: _KnownRooms | None) -> Memberships | None:
        """The reads of ``memberships``: with ``known``, only the rooms changed since
        (None if one of them was removed)."""
        window = after is not None and after < up_to
        args: list[object] = [user_id, device_id]
        if with_senders:  # a join with the membership events, which /sync v3 goes without
            mine_from = ", m.sender, m.stream_ordering FROM current_state c JOIN events m ON m.event_id = c.event_id"
            sender, position = "sender", "stream_ordering"
        else:
            mine_from, sender, position = " FROM current_state c", "NULL", "NULL::bigint"
        changed_since = ""
        if known is not None:
            args.append(known.position)
            changed_since = f" AND c.changed_at > ${len(args)}"
        if window:
            args += [after, up_to]
        rows = await self.db.fetch(
            f"WITH mine AS (SELECT c.room_id, c.membership, c.event_id{mine_from}"
            f"  WHERE c.type = 'm.room.member' AND c.state_key = $1{changed_since})"
            f" SELECT 'room' AS kind, room_id, membership AS name, event_id, {sender} AS state_key, {position} AS n,"
            "  NULL::boolean AS outlier, NULL::boolean AS rejected FROM mine"
            + (" UNION ALL"
               " SELECT 'count', NULL, NULL, NULL, NULL, count(*), NULL, NULL FROM current_state"
               "  WHERE type = 'm.room.member' AND state_key = $1" if known is not None else "") +
            " UNION ALL"
            " SELECT 'key', NULL, algorithm, NULL, NULL, count(*), NULL, NULL FROM e2e_one_time_keys"
            "  WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm"
            " UNION ALL"
            " SELECT 'fallback', NULL, algorithm, NULL, NULL, NULL, NULL, NULL FROM e2e_fallback_keys"
            "  WHERE user_id = $1 AND device_id = $2 AND NOT used"
            + (_window_members(len(args) - 1, events_first=known is not None and (
                up_to - after <= max(SMALL_WINDOW, 4 * len(known.rooms)))) if window else ""),
            *args,
        )
        changed: dict[str, tuple[str, str]] = {}
        membership_events: dict[str, tuple[str, int]] = {}
        changes = []
        keys: dict[str, int] = {}
        fallback = []
        count = None
        for r in rows:
            kind = r["kind"]
            if kind == "room":
                changed[r["room_id"]] = (r["name"], r["event_id"])
                if with_senders:
                    membership_events[r["room_id"]] = (r["state_key"], r["n"])
            elif kind == "member":
                changes.append(MemberEvent(
                    r["room_id"], r["state_key"], r["event_id"], r["n"], r["outlier"], r["rejected"]))
            elif kind == "key":
                keys[r["name"]] = r["n"]
            elif kind == "count":
                count = r["n"]
            else:
                fallback.append(r["name"])
        rooms = changed
        if known is not None:
            # Unchanged, the same dict as last time (its readers never change it).
            rooms = {**known.rooms, **changed} if changed else known.rooms
            if len(rooms) != count:
                return None
        changes.sort(key=lambda e: e.stream_ordering)
        return Memberships(rooms, changes, keys, sorted(fallback), membership_events)

    async def room_reads(
        self, windows: Sequence[RoomWindow], limit: int, event_filter: EventFilterSql | None = None,
        unread: UnreadRequest | None = None,
    ) -> RoomReads:
        """What a /sync reads of the rooms it sends, one row per room in one statement:
        the ids of each window's newest ``limit`` events, newest first (one index scan
        backwards per room); the state groups at the window's start with its
        ``state_at_after``, and at its end (the state a /sync compares its timelines
        with), the latter only when the timeline is empty or filtered: else it is the
        state group after the timeline's newest event, the newest of the window; and with
        ``unread``, what counting the rooms' unread notifications needs."""
        if not windows:
            return RoomReads({}, {}, {}, {})
        f = event_filter or EventFilterSql()
        filtered = bool(f.types is not None or f.not_types or f.senders is not None or f.not_senders
                        or f.ignored_senders)
        unread_rooms = list(unread.up_to) if unread is not None else []
        # The arrays are read through scalar subqueries, which hide their lengths from the
        # planner: every plan then estimates the same number of rooms, so after its first
        # runs PostgreSQL keeps the statement's generic plan (0.3 ms for a wake's one room)
        # instead of planning it afresh each time (1.1 ms more). Seen with a literal array,
        # a plan for one room always looks cheaper than the generic one.
        rows = await self.db.fetch(
            "WITH windows AS (SELECT * FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[]),"
            "  (SELECT $3::bigint[]), (SELECT $10::bool[])) AS w (room_id, after, up_to, state_at_after)),"
            " unread_rooms AS (SELECT * FROM unnest((SELECT $11::text[]), (SELECT $12::bigint[]))"
            "  AS u (room_id, up_to)),"
            + unread_inputs_ctes(UNREAD_FIRST) +
            " SELECT w.room_id, w.after, w.up_to, t.timeline, t.groups_before,"
            f" CASE WHEN cardinality(t.timeline) = 0 OR ${FILTERED}::boolean"
            f"  THEN ({_STATE_GROUP_AT.format(position='w.up_to')}) END AS group_at_end,"
            f" CASE WHEN w.state_at_after THEN ({_STATE_GROUP_AT.format(position='w.after')}) END"
            "  AS group_at_after,"
            " u.room_id IS NOT NULL AS counted, u.member_event, u.joined_at, u.evaluated, u.event_ids,"
            " u.read_threads, u.read_positions, u.member_count, u.create_event, u.power_levels_event,"
            " u.stored_threads, u.stored_notifications, u.stored_highlights"
            " FROM windows w CROSS JOIN LATERAL (SELECT"
            "  COALESCE(array_agg(x.event_id ORDER BY x.stream_ordering DESC), '{}') AS timeline,"
            "  array_agg(x.state_group_before ORDER BY x.stream_ordering DESC) AS groups_before FROM ("
            "  SELECT event_id, stream_ordering, state_group_before FROM events"
            "  WHERE room_id = w.room_id AND stream_ordering > w.after AND stream_ordering <= w.up_to"
            "  AND NOT outlier AND rejected_reason IS NULL" + _FILTER_5_TO_9 +
            "  ORDER BY stream_ordering DESC LIMIT $4) x) t"
            " LEFT JOIN unread_inputs u ON u.room_id = w.room_id",
            [w.room_id for w in windows], [w.after for w in windows], [w.up_to for w in windows], limit,
            *_filter_args(f), [w.state_at_after for w in windows],
            unread_rooms, [unread.up_to[r] for r in unread_rooms] if unread is not None else [],
            *unread_inputs_args(
                unread.user_id if unread is not None else "", unread.not_senders if unread is not None else (),
                unread.limit if unread is not None else 0, unread.member_counts if unread is not None else None),
            filtered,
        )
        out = RoomReads({}, {}, {}, {})
        for r in rows:
            room_id = r["room_id"]
            out.timelines[room_id] = list(r["timeline"])
            out.groups_before[room_id] = list(r["groups_before"] or ())
            if not r["timeline"] or filtered:
                out.state_groups[(room_id, r["up_to"])] = r["group_at_end"]
            if r["group_at_after"] is not None:
                out.state_groups[(room_id, r["after"])] = r["group_at_after"]
            if r["counted"]:
                out.unread[room_id] = unread_inputs_of(r)
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
        """Member counts and hero candidates of many rooms, from their current state: the
        first ``heroes`` members but the user, joined and invited first, in the order
        they became members (``changed_at``: their membership event's position, but for a
        state reset, where it is the position of the reset). Each membership's members are
        read in that order from an index, as many as needed: a room of 20,000 members is
        not sorted (the counts still count them, in the index)."""
        if not room_ids:
            return {}

        def first(membership: str) -> str:
            return (
                "(SELECT c.state_key, c.membership, c.changed_at FROM current_state c"
                " WHERE c.room_id = r.room_id AND c.type = 'm.room.member'"
                f" AND c.membership = {membership} AND c.state_key <> $2"
                " ORDER BY c.changed_at, c.state_key LIMIT (SELECT $3::int))")

        def in_order(*memberships: str) -> str:
            parts = " UNION ALL ".join(first(m) for m in memberships)
            return (f"ARRAY(SELECT ARRAY[h.state_key, h.membership] FROM ({parts}) h"
                    " ORDER BY h.changed_at, h.state_key LIMIT (SELECT $3::int))")

        def count(membership: str) -> str:
            return (f"(SELECT count(*) FROM current_state c WHERE c.room_id = r.room_id"
                    f" AND c.type = 'm.room.member' AND c.membership = '{membership}')")

        present = in_order("'join'", "'invite'")
        absent = in_order(*(f"'{m}'" for m in _ABSENT))
        rows = await self.db.fetch(
            f"SELECT r.room_id, {count('join')} AS joined, {count('invite')} AS invited, p.present,"
            f" CASE WHEN cardinality(p.present) < (SELECT $3::int) THEN {absent} END AS absent"
            " FROM unnest((SELECT $1::text[])) AS r (room_id)"
            f" CROSS JOIN LATERAL (SELECT {present} AS present) p",
            list(room_ids), user_id, heroes,
        )
        out = {r: RoomSummary(0, 0, ()) for r in room_ids}
        for r in rows:
            candidates = [tuple(pair) for pair in r["present"]] + [tuple(pair) for pair in r["absent"] or ()]
            out[r["room_id"]] = RoomSummary(r["joined"], r["invited"], tuple(candidates[:heroes]))
        return out
