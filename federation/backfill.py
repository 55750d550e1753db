"""Backfill: a room's history from before the oldest event we have, fetched from its other servers.

Spec: https://spec.matrix.org/v1.19/server-server-api/#backfilling-and-retrieving-missing-events

A room joined over federation starts here at our join: what came before lives on
the servers that were there. When a client's backwards /messages runs past our
oldest event (homeserver/services/room_events.py calls ``Backfiller.backfill``
through its ``backfiller`` attribute, set by ``install``), we ask a server of the
room for ``GET /backfill/{roomId}?v=<the prev events we lack>&limit=N``, check
each PDU as any received one (format, signatures, hashes; auth events fetched
when missing), work out the state before each (from its prev events, or from the
peer's /state_ids where those are unknown) and write them with
``receive_remote(backfilled=True)``: below every position in use, newest first,
so that pagination by stream order finds them older than everything we had.

The work is bounded: at most MAX_BACKFILL_LIMIT events a request, MAX_SERVERS_TRIED
servers, a time budget per call, and a room whose history nobody gave us is not
asked about again for RETRY_AFTER_SECONDS.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import Mapping
from urllib.parse import quote

from homeserver.protocol import ids
from homeserver.protocol.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.room_versions import RoomVersion

from federation.context import Federation
from federation.inbound import PduRejected

log = logging.getLogger(__name__)

FED = "/_matrix/federation/v1"
# Events asked for at once: a page of a client is often small, a round trip is not.
MIN_BACKFILL_LIMIT = 20
MAX_BACKFILL_LIMIT = 100
MAX_SERVERS_TRIED = 3
# Seconds one backfill call may spend fetching (the client's /messages waits for it).
FETCH_BUDGET_SECONDS = 20.0
REQUEST_TIMEOUT_SECONDS = 10.0
RETRY_AFTER_SECONDS = 30.0


def install(fed: Federation) -> "Backfiller":
    """Let /messages backfill rooms over federation (explicit wiring, from federation/app.py)."""
    backfiller = Backfiller(fed)
    fed.services.room_events.backfiller = backfiller
    return backfiller


class Backfiller:
    def __init__(self, fed: Federation):
        self.fed = fed
        self.events = fed.services.events
        self.pipeline = fed.services.pipeline
        self.receiver = fed.receiver
        self._room_locks: dict[str, asyncio.Lock] = {}
        # room id -> (backfill points, monotonic time until which they are not asked for again)
        self._given_up: dict[str, tuple[frozenset[str], float]] = {}

    async def backfill(self, room_id: str, limit: int) -> bool:
        """Fetch and store up to about ``limit`` older events of the room; whether any were added."""
        lock = self._room_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            points = await self.fed.graph.backfill_points(room_id)
            if not points:
                return False  # the room's history is complete here (down to its create event)
            given_up = self._given_up.get(room_id)
            if given_up is not None and given_up[0] == frozenset(points) and time.monotonic() < given_up[1]:
                return False
            version = await self.events.get_room_version(room_id)
            if version is None:
                return False
            limit = min(max(limit, MIN_BACKFILL_LIMIT), MAX_BACKFILL_LIMIT)
            deadline = time.monotonic() + FETCH_BUDGET_SECONDS
            for server in (await self._servers(room_id))[:MAX_SERVERS_TRIED]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch = await asyncio.wait_for(
                        self._prepare(server, room_id, version, points, limit), remaining)
                except (asyncio.TimeoutError, PduRejected) as e:
                    log.info("backfill of %s from %s failed: %s", room_id, server, e or "timeout")
                    continue
                if batch and await self._write(room_id, batch):
                    self._given_up.pop(room_id, None)
                    return True
            if len(self._given_up) > 10_000:
                self._given_up.clear()
            self._given_up[room_id] = (frozenset(points), time.monotonic() + RETRY_AFTER_SECONDS)
            return False

    async def _servers(self, room_id: str) -> list[str]:
        """Other servers of the room, the room creator's first (it has the whole history)."""
        servers = [s for s in await self.fed.servers_in_room(room_id) if s != self.fed.server_name]
        create_id = await self.fed.services.state.get_current_state_event_id(room_id, "m.room.create", "")
        create = await self.events.get_event(create_id) if create_id else None
        creator_server = ids.server_name_of(create.sender) if create is not None else None
        if creator_server in servers:
            servers.remove(creator_server)
            servers.insert(0, creator_server)
        return servers

    async def _prepare(self, server: str, room_id: str, version: RoomVersion, points: list[str],
                       limit: int) -> list[tuple[Event, dict[StateKey, str]]]:
        """The new events of one /backfill answer, oldest first, each with the state before it."""
        try:
            answer = await self.fed.client.get_json(
                server, f"{FED}/backfill/{quote(room_id, safe='')}", {"v": points, "limit": str(limit)},
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except Exception as e:  # FederationError, FederationUnreachable, a bad answer
            raise PduRejected(f"/backfill failed: {e}")
        pdus = answer.get("pdus") if isinstance(answer, dict) else None
        if not isinstance(pdus, list):
            raise PduRejected("/backfill answer without a list of pdus")
        batch: dict[str, Event] = {}
        for pdu in pdus[:limit]:
            try:
                event = await self.receiver.parse_and_verify(pdu, version)  # steps 1-3
            except PduRejected as e:
                log.info("backfilled event from %s dropped: %s", server, e)
                continue
            if event.room_id == room_id:
                batch[event.event_id] = event
        # Outliers of an auth chain (e.g. the state a join brought) come back as part of the timeline.
        with_state = await self.events.ids_with_state(batch)
        batch = {i: e for i, e in batch.items() if i not in with_state}
        if not batch:
            return []
        ordered = _oldest_first(batch)
        # The batch is written newest first, so the auth events it holds itself are
        # stored before that (as outliers, which the writes below then replace).
        cited = {a for e in ordered for a in e.auth_event_ids}
        auth_in_batch = [e.json for e in ordered if e.event_id in cited]
        if auth_in_batch:
            await self.receiver.store_outliers(server, auth_in_batch, version, room_id=room_id)
        for event in ordered:
            await self.receiver.ensure_auth_events(server, event)
        return await self._states_before(server, version, ordered)

    async def _states_before(self, server: str, version: RoomVersion,
                             ordered: list[Event]) -> list[tuple[Event, dict[StateKey, str]]]:
        """Step 5's state before each event: from its prev events in the batch or stored here,
        else from the peer (/state_ids at the prevs we lack)."""
        batch = {e.event_id: e for e in ordered}
        after: dict[str, dict[StateKey, str]] = {}
        out = []
        for event in ordered:
            state_sets = []
            for prev_id in event.prev_event_ids:
                if prev_id in after:
                    state_sets.append(after[prev_id])
                    continue
                prev = await self.events.get_event(prev_id)
                if prev is None or prev.internal.get("state_group_after") is None:
                    state_sets = None
                    break
                state_sets.append(dict(await self.fed.services.state.get_state(prev.internal["state_group_after"])))
            if state_sets is None:
                before = await self.receiver.state_before_from_peer(server, event)
            elif len(state_sets) == 1:
                before = state_sets[0]
            else:
                before = await self.pipeline.resolver.resolve(version, state_sets, extra_events=batch)
            out.append((event, before))
            after[event.event_id] = before
            if event.is_state() and await self._passes(event, before, batch):
                # A state event the rules will reject changes nothing for the events after it.
                after[event.event_id] = {**before, event.state_tuple: event.event_id}
        return out

    async def _passes(self, event: Event, before: Mapping[StateKey, str], batch: dict[str, Event]) -> bool:
        """Whether the auth rules will accept the event against this state (step 5, as the pipeline checks)."""
        keys = set(auth_types_for_event(event.room_version, event.type, event.sender,
                                        event.state_key, event.content)) | {("m.room.create", "")}
        wanted = {key: before[key] for key in keys if key in before}
        stored = await self.events.get_events(i for i in wanted.values() if i not in batch)
        loaded = {**stored, **batch}
        auth_state = {key: loaded[i] for key, i in wanted.items() if i in loaded}
        try:
            check_auth_rules(event, auth_state)
        except AuthError:
            return False
        return True

    async def _write(self, room_id: str, batch: list[tuple[Event, dict[StateKey, str]]]) -> bool:
        """Newest first: each write takes the next position down, so the oldest ends lowest."""
        added = False
        async with self.receiver.room_lock(room_id):
            for event, before in reversed(batch):
                try:
                    rejected = await self.pipeline.receive_remote(event, state_before=before, backfilled=True)
                except Exception:
                    log.exception("backfilled event %s could not be stored", event.event_id)
                    continue
                if rejected is not None:
                    log.info("backfilled event %s rejected: %s", event.event_id, rejected)
                added = True
        return added


def _oldest_first(events: Mapping[str, Event]) -> list[Event]:
    """The events so that each comes after its prev events among them; ties by (depth, id).

    Kahn's algorithm: a peer's depths may lie, the edges decide. Events on a
    cycle (which no honest graph has) are left out.
    """
    children: dict[str, list[str]] = {i: [] for i in events}
    waiting: dict[str, int] = {}
    for event_id, event in events.items():
        prevs = {p for p in event.prev_event_ids if p in events and p != event_id}
        waiting[event_id] = len(prevs)
        for prev in prevs:
            children[prev].append(event_id)
    ready = [(e.depth, i) for i, e in events.items() if waiting[i] == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(events[event_id])
        for child in children[event_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (events[child].depth, child))
    return ordered
