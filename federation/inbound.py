"""Receiving PDUs from other servers: the spec's checks, in order, then the one pipeline.

Spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu

Steps 1-3 (format, signatures, content hash) are here, with the fetching a
peer's event may need: its auth chain (``/event_auth``), its missing prev
events (``/get_missing_events``, bounded), and when a gap is too large the
state before it (``/state_ids`` + ``/event``). Steps 4-6 (auth events, state
before, current state) are ``EventPipeline.receive_remote``, the code path
local events take too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any, AsyncIterator, Iterable
from urllib.parse import quote

from homeserver.protocol import signing
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.pdu_checks import PduFormatError, check_pdu_format
from homeserver.protocol.redaction import redact_event
from homeserver.protocol.room_versions import RoomVersion
from homeserver.services.server_acl import acl_allows
from homeserver.protocol.signing import SignatureError
from homeserver.services.container import Services

log = logging.getLogger(__name__)

FED = "/_matrix/federation/v1"
# How far back /get_missing_events may take us before we ask for the state instead.
MAX_MISSING_EVENTS = 20
# Events fetched one by one at once (a state gap or an auth chain).
FETCH_CONCURRENCY = 10
# Levels of missing auth events fetched one by one below the events asked for.
MAX_AUTH_FETCH_ROUNDS = 10
# PDUs of a room held while one of our users joins it; more are dropped (the join's
# state and later events' /get_missing_events make up for them).
MAX_HELD_PDUS = 100


class PduRejected(Exception):
    """The PDU is dropped before the auth rules: bad format, signature, or unknown room."""


@dataclasses.dataclass
class _JoinInProgress:
    """Our joins of one room under way, and the PDUs of the room that came meanwhile."""

    joins: int = 0
    held: list[tuple[str, Any]] = dataclasses.field(default_factory=list)


class EventReceiver:
    def __init__(self, services: Services, keyring: Any, client: Any):
        self.services = services
        self.keyring = keyring
        self.client = client
        self.events = services.events
        self.pipeline = services.pipeline
        # One PDU of a room at a time, across transactions and fetches.
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._joins: dict[str, _JoinInProgress] = {}

    def room_lock(self, room_id: str) -> asyncio.Lock:
        lock = self._room_locks.get(room_id)
        if lock is None:
            if len(self._room_locks) > 10_000:
                self._room_locks = {r: l for r, l in self._room_locks.items() if l.locked()}
            lock = self._room_locks[room_id] = asyncio.Lock()
        return lock

    # Steps 1-3

    async def parse_and_verify(self, pdu: Any, version: RoomVersion | None = None) -> Event:
        """A checked Event from a PDU (signatures verified, redacted on a hash mismatch); PduRejected."""
        if not isinstance(pdu, dict):
            raise PduRejected("a PDU must be a JSON object")
        room_id = pdu.get("room_id")
        if version is None:
            if not isinstance(room_id, str):
                raise PduRejected("PDU without a room_id")
            version = await self.events.get_room_version(room_id)
            if version is None:
                raise PduRejected(f"unknown room {room_id}")
        # Our own view of the event: without the sender's unsigned data.
        pdu = {k: v for k, v in pdu.items() if k != "unsigned"}
        try:
            check_pdu_format(pdu, version)  # step 1
            event = signing.event_from_pdu(pdu, version)
        except (PduFormatError, ValueError) as e:
            raise PduRejected(f"bad format: {e}")
        try:
            await self.keyring.verify_event_signatures(event)  # step 2
        except SignatureError as e:
            raise PduRejected(f"bad signature on {event.event_id}: {e}")
        except Exception as e:  # keys could not be fetched: the same as unverifiable
            raise PduRejected(f"cannot verify {event.event_id}: {e}")
        if not signing.check_content_hash(pdu):  # step 3: keep it, but only its redacted form
            log.info("content hash mismatch on %s: redacting", event.event_id)
            event = Event(redact_event(pdu, version), event.event_id, version)
        return event

    async def event_id_of(self, pdu: Any) -> str | None:
        """The id a PDU has in its room's version, for the transaction's answer; None if unknowable."""
        if not isinstance(pdu, dict) or not isinstance(pdu.get("room_id"), str):
            return None
        version = await self.events.get_room_version(pdu["room_id"])
        if version is None:
            event_id = pdu.get("event_id")
            return event_id if isinstance(event_id, str) else None
        return self.event_id_in(pdu, version)

    @staticmethod
    def event_id_in(pdu: Any, version: RoomVersion) -> str | None:
        if not isinstance(pdu, dict):
            return None
        try:
            return signing.compute_event_id({k: v for k, v in pdu.items() if k != "unsigned"}, version)
        except Exception:  # a PDU too broken to hash has no id
            return None

    # Whole PDUs

    async def receive_pdu(self, origin: str, pdu: Any) -> str | None:
        """Handle one PDU of a transaction; an error text for the transaction's answer, or None.

        Only rooms we are joined to take PDUs (as Synapse). A room we know only by an
        invite, or have left, would otherwise have its state seeded by whatever the
        sender answers to /event_auth and /state_ids, not by the state a join returns.
        """
        room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
        in_progress = self._joins.get(room_id) if isinstance(room_id, str) else None
        if in_progress is not None and not await self.we_are_joined(room_id):
            # Sent by a server that has seen our join before we stored it: kept for after.
            if len(in_progress.held) < MAX_HELD_PDUS:
                in_progress.held.append((origin, pdu))
            return None
        try:
            event = await self.parse_and_verify(pdu)
        except PduRejected as e:
            return str(e)
        if not await self.origin_allowed(event.room_id, origin):
            return f"{origin} is denied by the room's server ACL"
        async with self.room_lock(event.room_id):
            if not await self.we_are_joined(event.room_id):
                return f"{self.services.server_name} is not in the room"
            try:
                return await self._receive_live(origin, event)
            except PduRejected as e:
                return str(e)

    async def we_are_joined(self, room_id: str) -> bool:
        return self.services.server_name in await self.pipeline.joined_servers(room_id)

    @contextlib.asynccontextmanager
    async def joining(self, room_id: str) -> AsyncIterator[None]:
        """Around a join of ours over federation: the room's PDUs that arrive meanwhile wait for it.

        The resident server sends the room's new events to us as soon as it has
        taken our join, before our send_join has returned and its state is stored.
        Held in this process only: another process of ours drops them, and the next
        event's prev events bring them back through /get_missing_events.
        """
        in_progress = self._joins.setdefault(room_id, _JoinInProgress())
        in_progress.joins += 1
        try:
            yield
        finally:
            in_progress.joins -= 1
            if in_progress.joins == 0:
                del self._joins[room_id]
                try:
                    await self._receive_held(room_id, in_progress.held)
                except Exception:  # not to hide the join's own outcome
                    log.exception("PDUs held during the join of %s were not taken", room_id)

    async def _receive_held(self, room_id: str, held: list[tuple[str, Any]]) -> None:
        if held and not await self.we_are_joined(room_id):
            log.info("join of %s failed: %d PDUs sent meanwhile dropped", room_id, len(held))
            return
        for origin, pdu in held:
            try:
                error = await self.receive_pdu(origin, pdu)
            except Exception:  # one bad PDU must not fail the join that is already stored
                log.exception("PDU held during the join of %s failed", room_id)
                continue
            if error:
                log.info("PDU held during the join of %s not accepted: %s", room_id, error)

    async def _receive_live(self, origin: str, event: Event, fetch_missing: bool = True) -> str | None:
        known = await self.events.known_event_ids([event.event_id])
        if event.event_id in known and not known[event.event_id]:
            return None
        await self.ensure_auth_events(origin, event)
        missing = await self._missing_prevs(event)
        if missing and fetch_missing:
            await self._fetch_missing_prevs(origin, event)
            missing = await self._missing_prevs(event)
        state_before = None
        if missing:
            state_before = await self.state_before_from_peer(origin, event)
        rejected = await self.pipeline.receive_remote(event, state_before=state_before)
        if rejected is not None:
            log.info("rejected %s from %s: %s", event.event_id, origin, rejected)
            return f"rejected: {rejected}"
        return None

    async def _missing_prevs(self, event: Event) -> list[str]:
        # An outlier prev (of an auth chain) has no state of its own here: as good as missing.
        with_state = await self.events.ids_with_state(event.prev_event_ids)
        return [p for p in event.prev_event_ids if p not in with_state]

    async def _fetch_missing_prevs(self, origin: str, event: Event) -> None:
        """Step 5's gap filling: /get_missing_events back to what we have, oldest first."""
        room_id = event.room_id
        earliest = await self.events.get_forward_extremities(room_id)
        try:
            answer = await self.client.post_json(
                origin, f"{FED}/get_missing_events/{quote(room_id, safe='')}",
                {"earliest_events": earliest, "latest_events": [event.event_id],
                 "limit": MAX_MISSING_EVENTS, "min_depth": 0},
            )
        except Exception as e:
            log.info("get_missing_events from %s failed: %s", origin, e)
            return
        pdus = answer.get("events") if isinstance(answer, dict) else None
        if not isinstance(pdus, list):
            return
        fetched: list[Event] = []
        for pdu in pdus[:MAX_MISSING_EVENTS]:
            try:
                candidate = await self.parse_and_verify(pdu, event.room_version)
            except PduRejected as e:
                log.info("missing event from %s dropped: %s", origin, e)
                continue
            if candidate.room_id == room_id:
                fetched.append(candidate)
        for missing_event in sorted(fetched, key=lambda e: (e.depth, e.event_id)):
            await self._receive_live(origin, missing_event, fetch_missing=False)

    async def state_before_from_peer(self, origin: str, event: Event) -> dict[StateKey, str]:
        """The state before an event whose prev events we lack: the peer's state after each prev, resolved."""
        room_id = event.room_id
        state_sets: list[dict[StateKey, str]] = []
        for prev_id in event.prev_event_ids:
            prev = await self.events.get_event(prev_id)
            if prev is not None and prev.internal.get("state_group_after") is not None:
                state_sets.append({
                    **await self.services.state.get_state(prev.internal["state_group_after"])
                })
                continue
            try:
                answer = await self.client.get_json(
                    origin, f"{FED}/state_ids/{quote(room_id, safe='')}", {"event_id": prev_id})
            except Exception as e:
                raise PduRejected(f"cannot get the state at {prev_id} from {origin}: {e}")
            pdu_ids = answer.get("pdu_ids") if isinstance(answer, dict) else None
            auth_ids = answer.get("auth_chain_ids") if isinstance(answer, dict) else None
            if not isinstance(pdu_ids, list) or not all(isinstance(i, str) for i in pdu_ids):
                raise PduRejected(f"bad /state_ids answer from {origin}")
            wanted = [i for i in (auth_ids or []) if isinstance(i, str)] + pdu_ids + [prev_id]
            await self.fetch_events_as_outliers(origin, room_id, event.room_version, wanted)
            loaded = await self.events.get_events(pdu_ids + [prev_id])
            state = {e.state_tuple: e.event_id for i in pdu_ids if (e := loaded.get(i)) is not None and e.is_state()}
            prev = loaded.get(prev_id)
            if prev is not None and prev.is_state():
                state[prev.state_tuple] = prev.event_id
            state_sets.append(state)
        return await self.pipeline.resolver.resolve(event.room_version, state_sets)

    async def origin_allowed(self, room_id: str, origin: str) -> bool:
        """The room's m.room.server_acl (spec: PDUs of a denied server in /send are dropped)."""
        return await acl_allows(self.services.state, self.events, room_id, origin)

    # Auth chains and single events

    async def ensure_auth_events(self, origin: str, event: Event) -> None:
        """Fetch and store (as outliers) the auth events of ``event`` that we lack."""
        known = await self.events.known_event_ids(event.auth_event_ids)
        if all(a in known for a in event.auth_event_ids):
            return
        try:
            answer = await self.client.get_json(
                origin, f"{FED}/event_auth/{quote(event.room_id, safe='')}/{quote(event.event_id, safe='')}")
        except Exception as e:
            log.info("event_auth from %s failed: %s", origin, e)
            answer = None
        chain = answer.get("auth_chain") if isinstance(answer, dict) else None
        if isinstance(chain, list):
            await self.store_outliers(origin, chain, event.room_version, room_id=event.room_id)
        still_missing = [a for a in event.auth_event_ids if a not in await self.events.known_event_ids([a])]
        if still_missing:
            await self.fetch_events_as_outliers(origin, event.room_id, event.room_version, still_missing)

    async def store_outliers(self, origin: str, pdus: Iterable[Any], version: RoomVersion,
                             room_id: str | None = None) -> dict[str, Event]:
        """Check and store events as outliers, auth events before the events they authorise."""
        parsed: dict[str, Event] = {}
        for pdu in pdus:
            try:
                event = await self.parse_and_verify(pdu, version)
            except PduRejected as e:
                log.info("event from %s dropped: %s", origin, e)
                continue
            if room_id is not None and event.room_id != room_id:
                continue  # MSC4307: an auth chain stays in its room
            parsed[event.event_id] = event
        # Checked against each other and the stored events, and written, in one batch.
        await self.pipeline.receive_remote_outliers(topological_by_auth(parsed))
        return parsed

    async def fetch_events_as_outliers(self, origin: str, room_id: str, version: RoomVersion,
                                       event_ids: Iterable[str], _rounds: int = MAX_AUTH_FETCH_ROUNDS,
                                       _tried: set[str] | None = None) -> None:
        # Each event is asked for once, and missing auth events only a few levels deep:
        # a peer offering an endless (or, in v1-v2, cyclic) chain gets its events rejected.
        tried = set() if _tried is None else _tried
        wanted = [i for i in dict.fromkeys(event_ids) if i not in tried]
        tried.update(wanted)
        known = await self.events.known_event_ids(wanted)
        wanted = [i for i in wanted if i not in known]
        semaphore = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(event_id: str) -> Any:
            async with semaphore:
                try:
                    answer = await self.client.get_json(origin, f"{FED}/event/{quote(event_id, safe='')}")
                except Exception as e:
                    log.info("cannot fetch %s from %s: %s", event_id, origin, e)
                    return None
                pdus = answer.get("pdus") if isinstance(answer, dict) else None
                return pdus[0] if isinstance(pdus, list) and pdus else None

        pdus = [p for p in await asyncio.gather(*(fetch(i) for i in wanted)) if p is not None]
        # Their auth events may be missing too: fetch those first, one level at a time.
        parsed = []
        for pdu in pdus:
            try:
                parsed.append(await self.parse_and_verify(pdu, version))
            except PduRejected:
                continue
        parsed = [e for e in parsed if e.room_id == room_id and e.event_id in wanted]
        auth_ids = {a for e in parsed for a in e.auth_event_ids} - {e.event_id for e in parsed}
        known_auth = await self.events.known_event_ids(auth_ids)
        lacking = [a for a in auth_ids if a not in known_auth]
        if lacking and len(lacking) < 500 and _rounds > 1:
            await self.fetch_events_as_outliers(origin, room_id, version, lacking, _rounds - 1, tried)
        await self.pipeline.receive_remote_outliers(topological_by_auth({e.event_id: e for e in parsed}))


def topological_by_auth(events: dict[str, Event]) -> list[Event]:
    """Events ordered so that each comes after the auth events among them (cycles broken by depth)."""
    ordered: list[Event] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for start in sorted(events.values(), key=lambda e: (e.depth, e.event_id)):
        stack: list[tuple[Event, int]] = [(start, 0)]
        while stack:
            event, index = stack.pop()
            if index == 0:
                if state.get(event.event_id):
                    continue
                state[event.event_id] = 1
            auth = [a for a in event.auth_event_ids if a in events]
            if index < len(auth):
                stack.append((event, index + 1))
                child = events[auth[index]]
                if not state.get(child.event_id):
                    stack.append((child, 0))
                continue
            state[event.event_id] = 2
            ordered.append(event)
    return ordered
