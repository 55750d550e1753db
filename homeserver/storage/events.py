"""Events: stored as the exact canonical JSON text they were signed as, plus edges and positions."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Iterable, Sequence

import asyncpg
import orjson

from homeserver.protocol.events import Event
from homeserver.protocol.relations import relation_of
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.storage.cache import LruCache
from homeserver.storage.db import Database, opaque_text_array


@dataclasses.dataclass(frozen=True)
class EventFilterSql:
    """The parts of a client event filter that are applied in SQL."""

    types: Sequence[str] | None = None
    not_types: Sequence[str] = ()
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()
    # The users the reader ignores: their non-state events are left out, their state
    # events kept (spec: "Ignoring Users").
    ignored_senders: Sequence[str] = ()


class EventStore:
    def __init__(self, db: Database, cache_size: int = 5000):
        self.db = db
        self._cache: LruCache[str, Event] = LruCache(cache_size)
        self._room_versions: dict[str, RoomVersion] = {}

    # Reading

    async def get_room_version(self, room_id: str) -> RoomVersion | None:
        version = self._room_versions.get(room_id)
        if version is None:
            identifier = await self.db.fetchval("SELECT room_version FROM rooms WHERE room_id = $1", room_id)
            if identifier is None:
                return None
            version = KNOWN_ROOM_VERSIONS[identifier]
            self._room_versions[room_id] = version
        return version

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """The events we have of those ids (missing ones are left out)."""
        found: dict[str, Event] = {}
        missing = []
        for event_id in event_ids:
            event = self._cache.get(event_id)
            if event is None:
                missing.append(event_id)
            else:
                found[event_id] = event
        if missing:
            rows = await self.db.fetch(
                # A redaction only applies to an event of its own room. The redactions of all
                # the events are looked up together, not by a subquery per event.
                "WITH redacted AS (SELECT red.redacts, r.room_id, min(red.event_id) AS redacted_by"
                "  FROM redactions red JOIN events r ON r.event_id = red.event_id"
                "  WHERE red.redacts = ANY($1::text[]) GROUP BY red.redacts, r.room_id)"
                " SELECT e.event_id, e.json, e.stream_ordering, e.state_group_before,"
                " e.state_group_after, e.rejected_reason, e.internal_json, r.room_version,"
                " redacted.redacted_by,"
                " EXISTS (SELECT 1 FROM erased_users x WHERE x.user_id = e.sender) AS sender_erased"
                " FROM events e JOIN rooms r USING (room_id)"
                " LEFT JOIN redacted ON redacted.redacts = e.event_id AND redacted.room_id = e.room_id"
                " WHERE e.event_id = ANY($1::text[])",
                missing,
            )
            for row in rows:
                version = KNOWN_ROOM_VERSIONS[row["room_version"]]
                event = Event(parse_event_text(row["json"], version), row["event_id"], version)
                if row["internal_json"] != "{}":  # none for most events of other servers
                    event.internal.update(parse_internal_text(row["internal_json"]))
                event.internal["stream_ordering"] = row["stream_ordering"]
                event.internal["state_group_before"] = row["state_group_before"]
                event.internal["state_group_after"] = row["state_group_after"]
                event.internal["rejected"] = row["rejected_reason"]
                event.internal["redacted_by"] = row["redacted_by"]
                if row["sender_erased"]:
                    event.internal["sender_erased"] = True
                self._cache.set(event.event_id, event)
                found[event.event_id] = event
        return found

    async def get_event(self, event_id: str) -> Event | None:
        return (await self.get_events([event_id])).get(event_id)

    async def get_forward_extremities(self, room_id: str) -> list[str]:
        rows = await self.db.fetch("SELECT event_id FROM forward_extremities WHERE room_id = $1", room_id)
        return [row["event_id"] for row in rows]

    async def get_txn_event_id(self, user_id: str, device_id: str, txn_id: str) -> str | None:
        return await self.db.fetchval(
            "SELECT event_id FROM event_txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
            user_id, device_id, txn_id,
        )

    async def room_event_ids(
        self,
        room_id: str,
        after: int,
        up_to: int,
        limit: int,
        newest_first: bool,
        event_filter: EventFilterSql | None = None,
    ) -> list[str]:
        """Ids of the room's events with after < stream_ordering <= up_to, in stream order."""
        rows = await self.db.fetch(
            "SELECT event_id FROM events"
            " WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3"
            " AND NOT outlier AND rejected_reason IS NULL" + _FILTER_5_TO_9 +
            f" ORDER BY stream_ordering {'DESC' if newest_first else 'ASC'} LIMIT $4",
            room_id, after, up_to, limit, *_filter_args(event_filter),
        )
        return [row["event_id"] for row in rows]

    async def room_event_ids_many(
        self, windows: Sequence[tuple[str, int, int, int]], event_filter: EventFilterSql | None = None,
    ) -> dict[str, list[str]]:
        """``room_event_ids`` (newest first) of several windows, (room id, after, up_to,
        limit) each, in one statement: one index scan backwards per room."""
        if not windows:
            return {}
        rows = await self.db.fetch(
            "SELECT w.room_id, ARRAY(SELECT event_id FROM events"
            "  WHERE room_id = w.room_id AND stream_ordering > w.after AND stream_ordering <= w.up_to"
            "  AND NOT outlier AND rejected_reason IS NULL" + _FILTER_5_TO_9 +
            "  ORDER BY stream_ordering DESC LIMIT w.lim) AS ids"
            # The arrays through scalar subqueries, as in SyncQueries.room_reads: the plan
            # then keeps to the generic one instead of being made afresh at every call.
            " FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[]), (SELECT $3::bigint[]), (SELECT $4::int[]))"
            "  AS w (room_id, after, up_to, lim)",
            [w[0] for w in windows], [w[1] for w in windows], [w[2] for w in windows], [w[3] for w in windows],
            *_filter_args(event_filter),
        )
        return {row["room_id"]: list(row["ids"]) for row in rows}

    async def rooms_with_events_between(self, room_ids: list[str], after: int, up_to: int) -> set[str]:
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id FROM events WHERE room_id = ANY($1::text[])"
            " AND stream_ordering > $2 AND stream_ordering <= $3",
            room_ids, after, up_to,
        )
        return {row["room_id"] for row in rows}

    async def last_event_at(self, room_id: str, position: int) -> tuple[str, int] | None:
        """(event id, state group after it) of the room's last event at or before a position."""
        row = await self.db.fetchrow(
            "SELECT event_id, state_group_after FROM events"
            " WHERE room_id = $1 AND stream_ordering <= $2 AND NOT outlier AND rejected_reason IS NULL"
            " ORDER BY stream_ordering DESC LIMIT 1",
            room_id, position,
        )
        return (row["event_id"], row["state_group_after"]) if row else None

    async def insert_event(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        event: Event,
        canonical_json: str,
        stream_ordering: int,
        state_group_before: int | None,
        state_group_after: int | None,
        internal: dict[str, Any],
        replaced_extremities: list[str],
        txn: tuple[str, str, str, int] | None,
        *,
        becomes_extremity: bool = True,
        outlier: bool = False,
        rejected_reason: str | None = None,
    ) -> None:
        """Write an event with its edges, the room's new forward extremity, its txn id, redaction and relation.

        One statement, so that outside a transaction it is still atomic and
        costs a single round trip (the commit included). A remote event that
        is an outlier, rejected, soft-failed or backfilled changes no
        extremity (``becomes_extremity`` false), and a rejected one no
        redaction or relation either.
        """
        await conn.execute(_INSERT_EVENT_SQL, *_insert_event_args(
            event, canonical_json, stream_ordering, state_group_before, state_group_after, internal,
            replaced_extremities, txn, becomes_extremity, outlier, rejected_reason))

    async def insert_on_tip(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        event: Event,
        canonical_json: str,
        stream_ordering: int | None,
        state_group_before: int | None,
        state_group_after: int | None,
        internal: dict[str, Any],
        txn: tuple[str, str, str, int] | None,
        room_lock_key: int,
        state_epoch: int | None,
        notification: tuple[str, str, str] | None = None,
    ) -> TipWrite:
        """Write a local event on the room's tip, if the room's state is still the one the
        event was checked against, and its txn id is unused: a compare-and-set, so that
        writers on several processes need no lock between statements (docs/scaling.md).

        One statement, as ``insert_event``. The room's row is share-locked first (a state
        write of the room in progress is waited for) and its state epoch compared with
        ``state_epoch``, the one of the tip the event was built on (None: not compared,
        the caller holds the room's advisory lock and read the tip under it). Only then
        is anything written, with ``stream_ordering``, or (None) the next value of the
        events sequence, taken only then, so that a refused write takes no position.
        The event's prev events leave the tip, those still there: a concurrent message
        of another process, written on the same tip, makes a fork, which the next event
        of the room joins again (as Synapse's concurrent event creators do).
        ``room_lock_key``: the room's advisory lock, taken shared by the statement.
        ``notification``: (channel, payload, placeholder) to NOTIFY if the event is
        written, with the placeholder replaced by its position: the other processes
        hear of it at the commit, with no statement of its own.
        """
        row = await conn.fetchrow(_INSERT_ON_TIP_SQL, *_insert_event_args(
            event, canonical_json, stream_ordering, state_group_before, state_group_after, internal,
            event.prev_event_ids, txn, True, False, None), room_lock_key, *(notification or (None, None, None)),
            state_epoch)
        return TipWrite(row["position"], row["txn_event_id"])

    async def tip_with_facts(self, room_id: str, conn: asyncpg.Connection | None = None) -> RoomTip:
        """The room's forward extremities with the depth and state group after each, and
        the room's state epoch, read together (``conn``: in that connection's transaction)."""
        row = await (conn or self.db).fetchrow(f"SELECT {ROOM_TIP_COLUMNS}", room_id)
        return RoomTip.of(row["tip"], row["state_epoch"])

    async def insert_outliers(
        self, conn: asyncpg.Connection, rows: Sequence[tuple[Event, str, int, str | None]]
    ) -> None:
        """Write many outliers, (event, canonical JSON, position, rejection reason) each, as
        ``insert_event`` writes one (no state groups, no extremity, no txn id), in one batch."""
        await conn.executemany(_INSERT_EVENT_SQL, [
            _insert_event_args(event, text, position, None, None, {}, [], None, False, True, rejected)
            for event, text, position, rejected in rows
        ])

    async def delete_outlier(self, conn: asyncpg.Connection, event_id: str) -> None:
        """Drop an outlier's row so that the event can be written again as part of the room's graph."""
        await conn.execute("DELETE FROM events WHERE event_id = $1 AND outlier", event_id)
        self._cache.pop(event_id)

    async def lowest_stream_ordering(self) -> int:
        """The lowest position in use: outliers and backfilled events are written below it."""
        return await self.db.fetchval("SELECT COALESCE(min(stream_ordering), 0) FROM events")

    async def known_event_ids(self, event_ids: Iterable[str]) -> dict[str, bool]:
        """event id -> whether it is an outlier, for the ids we have stored."""
        rows = await self.db.fetch(
            "SELECT event_id, outlier FROM events WHERE event_id = ANY($1::text[])", list(event_ids)
        )
        return {r["event_id"]: r["outlier"] for r in rows}

    async def ids_with_state(self, event_ids: Iterable[str]) -> set[str]:
        """The ids among these whose state after them we know (not outliers of an auth chain)."""
        rows = await self.db.fetch(
            "SELECT event_id FROM events WHERE event_id = ANY($1::text[]) AND state_group_after IS NOT NULL",
            list(event_ids),
        )
        return {r["event_id"] for r in rows}

    async def is_referenced_as_prev(self, event_id: str) -> bool:
        """Whether a stored event already names this one in its prev_events (it is no extremity)."""
        return bool(await self.db.fetchval(
            "SELECT 1 FROM event_edges WHERE prev_event_id = $1 LIMIT 1", event_id
        ))

    async def remove_forward_extremities(
        self, conn: asyncpg.Connection, room_id: str, event_ids: list[str]
    ) -> None:
        """Events a live event follows are no longer the room's tip."""
        await conn.execute(
            "DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = ANY($2::text[])", room_id, event_ids
        )

    def invalidate(self, event_id: str) -> None:
        self._cache.pop(event_id)

    def forget_sender(self, user_id: str) -> None:
        """The user was erased: their cached events are read again (and served pruned)."""
        self._cache.drop_where(lambda event: event.sender == user_id)

    def remember(self, event: Event) -> None:
        """An event just written here, with its ``internal`` as a read would give it: the
        next event of its room cites it as a prev event, so the send need not read it back."""
        self._cache.set(event.event_id, event)

    def remember_written_elsewhere(self, event_id: str, position: int, body: dict[str, Any]) -> bool:
        """Another process wrote this event and told us all a read would give
        (services/cluster_hooks.py): kept as ``get_events`` would have made it. False
        when the body is not understood (the caller then drops what we had)."""
        try:
            version = KNOWN_ROOM_VERSIONS[body["v"]]
            group_before, group_after = body["g"]
            event_json = body["j"]
            if not isinstance(event_json, dict):
                return False
            event = Event(event_json, event_id, version)
            event.internal.update(body["i"])
        except (KeyError, TypeError, ValueError):
            return False
        event.internal.update(stream_ordering=position, state_group_before=group_before,
                              state_group_after=group_after, rejected=None, redacted_by=None)
        self._cache.set(event_id, event)
        return True

    def remember_room_version(self, room_id: str, version: RoomVersion) -> None:
        self._room_versions[room_id] = version

    def forget_room(self, room_id: str) -> None:
        """The room was purged (storage/purge.py): its version is no longer known."""
        self._room_versions.pop(room_id, None)


# What an EventFilterSql keeps of a room's events, in parameters $5 to $9 (_filter_args).
# Its arrays go through opaque_text_array, and are tested for NULL through a subquery
# too, so that no plan folds ``$5 IS NULL`` away: the generic plan is kept (db.py).
_FILTER_5_TO_9 = (
    f" AND ((SELECT $5::text[]) IS NULL OR type LIKE ANY({opaque_text_array('$5')}))"
    f" AND NOT (type LIKE ANY({opaque_text_array('$6')}))"
    f" AND ((SELECT $7::text[]) IS NULL OR sender = ANY({opaque_text_array('$7')}))"
    f" AND NOT (sender = ANY({opaque_text_array('$8')}))"
    f" AND NOT (state_key IS NULL AND sender = ANY({opaque_text_array('$9')}))"
)


def _filter_args(event_filter: EventFilterSql | None) -> list:
    f = event_filter or EventFilterSql()
    return [_like_patterns(f.types), _like_patterns(f.not_types) or [],
            list(f.senders) if f.senders is not None else None, list(f.not_senders), list(f.ignored_senders)]


# A run of digits that may be an integer beyond 64 bits, which orjson reads as a float.
_LONG_DIGIT_RUN = re.compile(r"[0-9]{19}")


def parse_internal_text(text: str) -> dict[str, Any]:
    """An event's internal_json (what we keep beside it: the sender's txn id, an invite's
    stripped state), parsed. Every event we send carries one, and the standard library
    takes 2 us for even the smallest: orjson, four times faster, is exact unless an
    integer exceeds 64 bits (a digit run that long, rare in these short texts, is left to
    the standard library, as is what orjson refuses, such as NaN)."""
    if _LONG_DIGIT_RUN.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def parse_event_text(text: str, version: RoomVersion) -> dict[str, Any]:
    """An event's stored text, parsed. From room version 6 on, an event holds no floats
    and no integers beyond 2**53 (pdu_checks refuses them on the way in), which orjson
    parses exactly, three times faster than the standard library: the cost of a first
    /sync after a restart, which reads its events. Older rooms' events may hold floats
    and larger integers, read by the standard library as their hashes were made."""
    return orjson.loads(text) if version.strict_canonicaljson else json.loads(text)


@dataclasses.dataclass(frozen=True)
class TipWrite:
    """What ``insert_on_tip`` did: the event's position if it was written; else the event
    already sent under its txn id, if that is why not (None: the room's tip had moved)."""

    position: int | None
    txn_event_id: str | None


@dataclasses.dataclass(frozen=True)
class TipEntry:
    """A forward extremity with what the next event needs of it."""

    event_id: str
    depth: int
    state_group_after: int | None


# A room's tip ($1: its id) as two columns read in one snapshot, so that the epoch is the one
# of these entries: ``tip`` (event id, depth, state group after) rows, and ``state_epoch``.
ROOM_TIP_COLUMNS = (
    "ARRAY(SELECT ROW(f.event_id, e.depth, e.state_group_after) FROM forward_extremities f"
    "  JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1) AS tip,"
    " (SELECT state_epoch FROM rooms WHERE room_id = $1) AS state_epoch"
)


@dataclasses.dataclass(frozen=True)
class RoomTip:
    """A room's forward extremities, and the room's state epoch (rooms.state_epoch, moved
    by every write of its current state) as of the same moment: a message built on these
    entries may be written while the room's epoch is still this one (``insert_on_tip``).
    ``state_epoch`` None: the room has no row (known only by an invite)."""

    entries: tuple[TipEntry, ...]
    state_epoch: int | None

    @classmethod
    def of(cls, rows: Iterable[Sequence[Any]], state_epoch: int | None) -> "RoomTip":
        """From (event id, depth, state group after) rows."""
        return cls(tuple(TipEntry(*row) for row in rows), state_epoch)

    def after(self, event_id: str, depth: int, state_group_after: int | None, replaced: Iterable[str],
              state_epoch: int | None) -> "RoomTip":
        """The tip once the event is written on it, replacing ``replaced`` (those still
        here), with the room's state epoch after that write."""
        gone = set(replaced)
        entries = tuple(e for e in self.entries if e.event_id not in gone and e.event_id != event_id)
        epoch = max((e for e in (self.state_epoch, state_epoch) if e is not None), default=None)
        return RoomTip(entries + (TipEntry(event_id, depth, state_group_after),), epoch)


# A local event on the tip, compare-and-set (insert_on_tip): the same writes as
# _INSERT_EVENT_SQL, each only if "go" has its row.
_INSERT_ON_TIP_SQL = """
WITH
room AS (
    -- The room's advisory lock, shared, first (a one-time filter): a writer holding it
    -- alone (a state event, services/room_writer.py) is not overtaken between its
    -- reading of the tip and its commit. Then the room's row, share-locked: a row changed
    -- by a writer that committed while this statement waited is seen as it is now (not
    -- as in the statement's snapshot), so a state epoch moved meanwhile refuses the
    -- write. Shared: messages of the room written at once do not wait for each other.
    SELECT 1 FROM rooms
    WHERE (SELECT pg_advisory_xact_lock_shared($27::bigint)::text) IS NOT NULL
      AND room_id = $2 AND ($31::bigint IS NULL OR state_epoch = $31::bigint)
    FOR SHARE
),
-- The txn id first (a send of the same txn id committing meanwhile is waited for, and
-- then this one writes nothing), so that the position is taken only by a write that
-- will not fail.
txn AS (
    INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts)
    SELECT $16::text, $17::text, $18::text, $1, $19::bigint
    WHERE $18::text IS NOT NULL AND EXISTS (SELECT 1 FROM room)
    ON CONFLICT DO NOTHING
    RETURNING 1
),
go AS (
    SELECT COALESCE($3::bigint, nextval('events_stream_seq')) AS position
    WHERE EXISTS (SELECT 1 FROM room) AND ($18::text IS NULL OR EXISTS (SELECT 1 FROM txn))
),
-- The prev events leave the tip, but those another writer is replacing at this moment:
-- it is not waited for (it holds them until it commits, an fsync), and it removes them.
replaced AS (
    SELECT event_id FROM forward_extremities
    WHERE room_id = $2 AND event_id = ANY($15::text[]) AND EXISTS (SELECT 1 FROM go)
    FOR UPDATE SKIP LOCKED
),
old_extremities AS (
    DELETE FROM forward_extremities WHERE room_id = $2 AND event_id IN (SELECT event_id FROM replaced)
),
ev AS (
    INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, sender,
        origin_server_ts, json, state_group_before, state_group_after, internal_json,
        outlier, rejected_reason)
    SELECT $1::text, $2::text, go.position, $4::bigint, $5::text, $6::text, $7::text, $8::bigint, $9::text,
        $10::bigint, $11::bigint, $12::text, $25::boolean, $26::text FROM go
),
edges AS (
    INSERT INTO event_edges (event_id, prev_event_id)
    SELECT $1, p FROM go, unnest($13::text[]) AS p ON CONFLICT DO NOTHING
),
auth AS (
    INSERT INTO event_auth (event_id, auth_event_id)
    SELECT $1, a FROM go, unnest($14::text[]) AS a ON CONFLICT DO NOTHING
),
new_extremity AS (
    INSERT INTO forward_extremities (room_id, event_id) SELECT $2, $1 FROM go WHERE $24::boolean
),
redaction AS (
    INSERT INTO redactions (event_id, redacts)
    SELECT $1, $20::text FROM go WHERE $20::text IS NOT NULL ON CONFLICT DO NOTHING
),
relation AS (
    INSERT INTO event_relations (event_id, room_id, relates_to_id, rel_type, aggregation_key)
    SELECT $1, $2, $21::text, $22::text, $23::text FROM go WHERE $22::text IS NOT NULL ON CONFLICT DO NOTHING
),
unrelated AS (
    DELETE FROM event_relations WHERE event_id = $20 AND room_id = $2 AND EXISTS (SELECT 1 FROM go)
),
told AS (
    SELECT pg_notify($28::text, replace($29::text, $30::text, go.position::text)) FROM go WHERE $28::text IS NOT NULL
)
SELECT (SELECT position FROM go) AS position, (SELECT count(*) FROM told) AS told,
       (SELECT event_id FROM event_txn_ids
        WHERE $18::text IS NOT NULL AND user_id = $16 AND device_id = $17 AND txn_id = $18) AS txn_event_id
"""


_INSERT_EVENT_SQL = """
WITH
ev AS (
    INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, sender,
        origin_server_ts, json, state_group_before, state_group_after, internal_json,
        outlier, rejected_reason)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $25, $26)
),
edges AS (
    INSERT INTO event_edges (event_id, prev_event_id)
    SELECT $1, p FROM unnest($13::text[]) AS p ON CONFLICT DO NOTHING
),
auth AS (
    INSERT INTO event_auth (event_id, auth_event_id)
    SELECT $1, a FROM unnest($14::text[]) AS a ON CONFLICT DO NOTHING
),
old_extremities AS (
    DELETE FROM forward_extremities WHERE $24::boolean AND room_id = $2 AND event_id = ANY($15::text[])
),
new_extremity AS (
    INSERT INTO forward_extremities (room_id, event_id) SELECT $2, $1 WHERE $24::boolean
),
txn AS (
    INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts)
    SELECT $16, $17, $18, $1, $19 WHERE $18::text IS NOT NULL
),
redaction AS (
    INSERT INTO redactions (event_id, redacts)
    SELECT $1, $20 WHERE $20::text IS NOT NULL ON CONFLICT DO NOTHING
),
relation AS (
    INSERT INTO event_relations (event_id, room_id, relates_to_id, rel_type, aggregation_key)
    SELECT $1, $2, $21, $22, $23 WHERE $22::text IS NOT NULL ON CONFLICT DO NOTHING
),
-- A redacted child loses its m.relates_to, so it leaves its parent's relations.
unrelated AS (
    DELETE FROM event_relations WHERE event_id = $20 AND room_id = $2
)
SELECT 1
"""


def _insert_event_args(
    event: Event, canonical_json: str, stream_ordering: int, state_group_before: int | None,
    state_group_after: int | None, internal: dict[str, Any], replaced_extremities: list[str],
    txn: tuple[str, str, str, int] | None, becomes_extremity: bool, outlier: bool, rejected_reason: str | None,
) -> tuple[Any, ...]:
    txn_user, txn_device, txn_id, txn_ts = txn if txn is not None else (None, None, None, None)
    relation = relation_of(event.content) if rejected_reason is None else None
    return (
        event.event_id, event.room_id, stream_ordering, event.depth, event.type, event.state_key,
        event.sender, event.origin_server_ts, canonical_json, state_group_before,
        state_group_after, json.dumps(internal),
        event.prev_event_ids, event.auth_event_ids, replaced_extremities,
        txn_user, txn_device, txn_id, txn_ts, event.redacts if rejected_reason is None else None,
        relation.parent_id if relation else None, relation.rel_type if relation else None,
        relation.key if relation else None,
        becomes_extremity, outlier, rejected_reason,
    )


def _like_patterns(patterns: Sequence[str] | None) -> list[str] | None:
    """Filter types allow a trailing '*' wildcard; turn them into LIKE patterns."""
    if patterns is None:
        return None
    out = []
    for pattern in patterns:
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        out.append(escaped.replace("*", "%"))
    return out
