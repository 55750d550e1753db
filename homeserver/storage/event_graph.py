"""The room DAG as peers read it: auth chains, backfill, missing events, state at an event.

Every walk here is bounded: by the events it must return (backfill, missing
events) or by the auth chain itself, which is small compared to a room's
history. Walks are cycle-safe, as a peer may send edges that loop.
"""

from __future__ import annotations

from typing import Collection, Iterable

from homeserver.protocol.events import StateKey
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.db import Database
from homeserver.storage.state import StateStore

# Backfill walks the ancestors within a window of depths, and widens it only
# when the window held too few events: a room's whole history is never walked.
_BACKFILL_FIRST_WINDOW_FACTOR = 2
_BACKFILL_WIDEN_FACTOR = 4
_ROOM_ID_FROM_CREATE_VERSIONS = [v for v, rv in KNOWN_ROOM_VERSIONS.items() if rv.room_id_from_create_event]


class EventGraphStore:
    def __init__(self, db: Database, state: StateStore):
        self.db = db
        self.state = state

    async def auth_chain_ids(self, event_ids: Iterable[str], include_given: bool = False) -> set[str]:
        """Ids of every stored event reachable from ``event_ids`` through auth_events.

        The given events themselves are left out unless ``include_given`` or unless
        one is in another's chain (the create event is in every other event's).
        In rooms whose id is the create event's (room version 12) the create event
        is cited by no event, but it authorises every one: it is in every chain
        here, as Synapse puts it there, so that a peer asking for an auth chain
        gets all it needs to authorise the events.
        """
        given = list(dict.fromkeys(event_ids))
        if not given:
            return set()
        # UNION (not UNION ALL) drops rows already produced, which ends the recursion on cycles.
        rows = await self.db.fetch(
            """
            WITH RECURSIVE chain (event_id) AS (
                SELECT auth_event_id FROM event_auth WHERE event_id = ANY($1::text[])
                UNION
                SELECT a.auth_event_id FROM event_auth a JOIN chain c ON a.event_id = c.event_id
            ),
            implied_create (event_id) AS (
                SELECT DISTINCT '$' || substr(g.room_id, 2) FROM events g JOIN rooms r USING (room_id)
                WHERE g.event_id = ANY($1::text[]) AND r.room_version = ANY($2::text[])
                AND g.type <> 'm.room.create'
            )
            SELECT c.event_id FROM (SELECT event_id FROM chain UNION SELECT event_id FROM implied_create) c
            JOIN events e ON e.event_id = c.event_id
            """,
            given, _ROOM_ID_FROM_CREATE_VERSIONS,
        )
        found = {row["event_id"] for row in rows}
        if include_given:
            stored = await self.db.fetch("SELECT event_id FROM events WHERE event_id = ANY($1::text[])", given)
            found.update(row["event_id"] for row in stored)
        return found

    async def state_before(self, event_id: str) -> dict[StateKey, str] | None:
        """The room state just before an event (what the spec calls the state "at" it).

        None when the event is unknown, rejected or an outlier: for those we hold no
        state we may vouch for. Rejected events are never part of the answer.
        """
        row = await self.db.fetchrow(
            "SELECT state_group_before, rejected_reason, outlier FROM events WHERE event_id = $1", event_id
        )
        if row is None or row["rejected_reason"] is not None or row["outlier"] or row["state_group_before"] is None:
            return None
        state = await self.state.get_state(row["state_group_before"])
        ids = list(state.values())
        rejected = await self.db.fetch(
            "SELECT event_id FROM events WHERE event_id = ANY($1::text[]) AND rejected_reason IS NOT NULL", ids
        )
        excluded = {r["event_id"] for r in rejected}
        return {key: eid for key, eid in state.items() if eid not in excluded}

    async def backfill_points(self, room_id: str, oldest: int = 20, limit: int = 10) -> list[str]:
        """The prev events we lack of the room's oldest events: where to backfill from.

        "Oldest" means lowest in our stream, the end backwards pagination reaches;
        a prev whose state we do not hold (an auth chain's outlier) counts as lacking.
        Deepest first.
        """
        rows = await self.db.fetch(
            """
            WITH oldest AS (
                SELECT event_id, depth FROM events WHERE room_id = $1 AND NOT outlier
                ORDER BY stream_ordering LIMIT $2
            )
            SELECT ed.prev_event_id, max(o.depth) AS depth FROM oldest o
            JOIN event_edges ed ON ed.event_id = o.event_id
            WHERE NOT EXISTS (SELECT 1 FROM events p
                             WHERE p.event_id = ed.prev_event_id AND p.state_group_after IS NOT NULL)
            GROUP BY ed.prev_event_id ORDER BY depth DESC, ed.prev_event_id LIMIT $3
            """,
            room_id, oldest, limit,
        )
        return [row["prev_event_id"] for row in rows]

    async def backfill_ids(self, room_id: str, from_ids: Collection[str], limit: int) -> list[str]:
        """Up to ``limit`` events of the room: ``from_ids`` and their ancestors through
        prev_events, highest depth first (then newest in our stream first).

        Only accepted, non-outlier events are returned, but the walk goes through
        any stored event. The walk covers the depths [top - window, top]; since depth
        falls along every edge, that finds every ancestor in the window. If the window
        holds fewer than ``limit`` events and more lie below it, it is widened.
        """
        if limit <= 0 or not from_ids:
            return []
        top = await self.db.fetchval(
            "SELECT max(depth) FROM events WHERE room_id = $1 AND event_id = ANY($2::text[])",
            room_id, list(from_ids),
        )
        if top is None:
            return []
        window = max(limit * _BACKFILL_FIRST_WINDOW_FACTOR, 1)
        while True:
            floor = top - window
            rows = await self.db.fetch(
                """
                WITH RECURSIVE walk (event_id, depth) AS (
                    SELECT event_id, depth FROM events WHERE room_id = $1 AND event_id = ANY($2::text[])
                    UNION
                    SELECT e.event_id, e.depth FROM walk w
                    JOIN event_edges ed ON ed.event_id = w.event_id
                    JOIN events e ON e.event_id = ed.prev_event_id AND e.room_id = $1
                    WHERE w.depth >= $3
                )
                SELECT w.event_id, w.depth, e.stream_ordering, (e.rejected_reason IS NULL AND NOT e.outlier) AS ok
                FROM walk w JOIN events e ON e.event_id = w.event_id
                """,
                room_id, list(from_ids), floor,
            )
            # Events below the floor are leaves of the walk: their own ancestors were not
            # walked, so they only count once the window reaches them.
            inside = [r for r in rows if r["depth"] >= floor]
            more_below = len(inside) < len(rows)
            ordered = sorted(
                (r for r in inside if r["ok"]), key=lambda r: (r["depth"], r["stream_ordering"]), reverse=True
            )
            if len(ordered) >= limit or not more_below:
                return [r["event_id"] for r in ordered[:limit]]
            window *= _BACKFILL_WIDEN_FACTOR

    async def missing_event_ids(
        self, room_id: str, earliest_ids: Collection[str], latest_ids: Collection[str], limit: int, min_depth: int,
    ) -> list[str]:
        """The events a peer lacks between what it has (``earliest_ids``) and ``latest_ids``.

        A breadth-first walk of prev_events from the latest events (which are not
        returned themselves), never entering an earliest event or one below
        ``min_depth``, stopping at ``limit``. Oldest (lowest depth) first. Spec:
        server-server-api/#post_matrixfederationv1get_missing_eventsroomid
        """
        seen = set(earliest_ids) | set(latest_ids)
        front = list(set(latest_ids) - set(earliest_ids))
        found: list[tuple[int, int, str]] = []
        # Each round is one query for one level of the walk, and each adds at least one
        # event, so there are at most ``limit`` rounds.
        while front and len(found) < limit:
            rows = await self.db.fetch(
                "SELECT DISTINCT e.event_id, e.depth, e.stream_ordering,"
                " (e.rejected_reason IS NULL AND NOT e.outlier) AS ok"
                " FROM event_edges ed JOIN events e ON e.event_id = ed.prev_event_id"
                " WHERE ed.event_id = ANY($1::text[]) AND e.room_id = $2 AND e.depth >= $3"
                " ORDER BY e.depth DESC, e.stream_ordering DESC",
                front, room_id, min_depth,
            )
            front = []
            for row in rows:
                if row["event_id"] in seen:
                    continue
                seen.add(row["event_id"])
                front.append(row["event_id"])
                if row["ok"] and len(found) < limit:
                    found.append((row["depth"], row["stream_ordering"], row["event_id"]))
        found.sort()
        return [event_id for _, _, event_id in found]

    async def event_at_timestamp(self, room_id: str, ts: int, forwards: bool) -> tuple[str, int] | None:
        """(event id, origin_server_ts) of the room's accepted event closest to ``ts``:
        the first at or after it going forwards, the last at or before it going back."""
        if forwards:
            condition, order = "origin_server_ts >= $2", "ASC"
        else:
            condition, order = "origin_server_ts <= $2", "DESC"
        row = await self.db.fetchrow(
            f"SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND {condition}"
            " AND NOT outlier AND rejected_reason IS NULL"
            f" ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT 1",
            room_id, ts,
        )
        return (row["event_id"], row["origin_server_ts"]) if row else None

    async def joined_servers(self, room_id: str) -> set[str]:
        """The servers with at least one joined member in the room's current state."""
        # A user id's server name is everything after its first colon.
        rows = await self.db.fetch(
            "SELECT DISTINCT substr(state_key, strpos(state_key, ':') + 1) AS server_name FROM current_state"
            " WHERE room_id = $1 AND type = 'm.room.member' AND membership = 'join'",
            room_id,
        )
        return {row["server_name"] for row in rows}

    async def servers_sharing_a_room(self, user_id: str) -> set[str]:
        """The servers with a joined member in any room the user is joined to, in one query."""
        rows = await self.db.fetch(
            "SELECT DISTINCT substr(o.state_key, strpos(o.state_key, ':') + 1) AS server_name"
            " FROM current_state mine JOIN current_state o ON o.room_id = mine.room_id"
            " AND o.type = 'm.room.member' AND o.membership = 'join'"
            " WHERE mine.type = 'm.room.member' AND mine.state_key = $1 AND mine.membership = 'join'",
            user_id,
        )
        return {row["server_name"] for row in rows}

    async def server_in_room(self, room_id: str, server_name: str) -> bool:
        """Whether a user of the server is joined to the room (current state)."""
        return bool(await self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM current_state WHERE room_id = $1 AND type = 'm.room.member'"
            " AND membership = 'join' AND substr(state_key, strpos(state_key, ':') + 1) = $2)",
            room_id, server_name,
        ))
