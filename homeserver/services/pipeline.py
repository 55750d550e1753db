"""The event pipeline: build, check, persist, notify (DESIGN.md).

Every local event goes through here; remote events will join at the check
step, so the same authorization rules judge both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import weakref
from typing import Any, Callable

from homeserver.errors import MatrixError, bad_json, forbidden, too_large
from homeserver.protocol import signing
from homeserver.protocol.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from homeserver.protocol.canonical import canonical_json_str
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.pdu_checks import PduFormatError, check_pdu_format
from homeserver.protocol.room_versions import EventFormat, RoomVersion
from homeserver.services.clock import now_ms
from homeserver.storage.cache import LruCache
from homeserver.storage.db import Database
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamChangeCache, StreamIdGenerator

log = logging.getLogger(__name__)

MAX_PREV_EVENTS = 10
MAX_EVENT_BYTES = 65_536


@dataclasses.dataclass(frozen=True)
class EventDraft:
    """What a local user asks to send; the pipeline fills in the rest."""

    type: str
    sender: str
    content: dict[str, Any]
    state_key: str | None = None
    redacts: str | None = None
    # (device id, txn id) for idempotent sends and unsigned.transaction_id.
    txn: tuple[str, str] | None = None
    # Our facts kept beside the event, e.g. invite_room_state.
    internal: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PersistedEvent:
    event: Event
    stream_ordering: int


class EventPipeline:
    def __init__(
        self,
        server_name: str,
        signing_key: Any,
        db: Database,
        events: EventStore,
        state: StateStore,
        rooms: RoomStore,
        stream: StreamIdGenerator,
        room_changes: StreamChangeCache,
        on_persisted: Callable[[Event, set[str]], None],
    ):
        self.server_name = server_name
        self.signing_key = signing_key
        self.db = db
        self.events = events
        self.state = state
        self.rooms = rooms
        self.stream = stream
        self.room_changes = room_changes
        self.on_persisted = on_persisted
        # A room's lock lives while someone holds or awaits it, so the map stays small.
        self._room_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # The tip of each room and who is joined, kept here because this process
        # is the rooms' only writer (see docs/architecture.md).
        self._extremities: LruCache[str, list[str]] = LruCache(10_000)
        self._joined_members: LruCache[str, frozenset[str]] = LruCache(10_000)

    def room_lock(self, room_id: str) -> asyncio.Lock:
        lock = self._room_locks.get(room_id)
        if lock is None:
            lock = self._room_locks[room_id] = asyncio.Lock()
        return lock

    async def create_room(self, version: RoomVersion, draft: EventDraft, is_public: bool) -> Event:
        """Build and persist a room's m.room.create event; returns it (its room_id is the room's)."""
        if version.room_id_from_create_event:
            room_id = None
        else:
            room_id = f"!{secrets.token_urlsafe(18)}:{self.server_name}"
        event = self._build(version, room_id, draft, prev_events=[], state_before={}, depth=1)
        async with self.room_lock(event.room_id):
            self._check(event, {})
            await self._persist(event, draft, prev_events=[], state_before_group=None, state_before={},
                                new_room=(version, is_public))
        return event

    def check_new_room(self, version: RoomVersion, drafts: list[EventDraft]) -> None:
        """Build and check a new room's first events in memory, persisting nothing.

        /createRoom runs this before anything is stored, so that a request whose
        initial state the rules refuse leaves no half-made room behind.
        """
        room_id = None if version.room_id_from_create_event else f"!check:{self.server_name}"
        state: dict[StateKey, Event] = {}
        prev_events: list[str] = []
        for depth, draft in enumerate(drafts, start=1):
            state_ids = {key: event.event_id for key, event in state.items()}
            event = self._build(version, room_id, draft, prev_events, state_ids, depth)
            room_id = event.room_id
            wanted = auth_types_for_event(version, event.type, event.sender, event.state_key, event.content)
            keys = set(wanted) | {("m.room.create", "")}
            self._check(event, {key: state[key] for key in keys if key in state})
            if event.is_state():
                state[event.state_tuple] = event
            prev_events = [event.event_id]

    async def send(self, room_id: str, draft: EventDraft) -> Event:
        """Build, check and persist a local event in an existing room."""
        version = await self.events.get_room_version(room_id)
        if version is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
        async with self.room_lock(room_id):
            if draft.txn is not None:
                existing = await self.events.get_txn_event_id(draft.sender, *draft.txn)
                if existing is not None:
                    event = await self.events.get_event(existing)
                    if event is not None:
                        return event
            prev_ids = (await self._forward_extremities(room_id))[:MAX_PREV_EVENTS]
            prevs = await self.events.get_events(prev_ids)
            if not prevs:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
            # With several extremities (only after federation) take the newest
            # one's state; state resolution will replace this choice.
            newest = max(prevs.values(), key=lambda e: e.internal["stream_ordering"])
            state_group = newest.internal["state_group_after"]
            state_before = await self.state.get_state(state_group)
            depth = max(e.depth for e in prevs.values()) + 1
            event = self._build(version, room_id, draft, list(prevs), state_before, depth)
            auth_state = await self._auth_state(event, state_before)
            self._check(event, auth_state)
            await self._persist(event, draft, list(prevs), state_group, state_before)
        return event

    async def _auth_state(self, event: Event, state_before: dict[StateKey, str]) -> dict[StateKey, Event]:
        wanted = auth_types_for_event(
            event.room_version, event.type, event.sender, event.state_key, event.content
        )
        keys = set(wanted) | {("m.room.create", "")}
        ids = {key: state_before[key] for key in keys if key in state_before}
        loaded = await self.events.get_events(ids.values())
        return {key: loaded[event_id] for key, event_id in ids.items() if event_id in loaded}

    def _build(
        self,
        version: RoomVersion,
        room_id: str | None,
        draft: EventDraft,
        prev_events: list[str],
        state_before: dict[StateKey, str],
        depth: int,
    ) -> Event:
        # Step 1 of the pipeline: the spec's auth events selection, then hash, sign, id.
        auth_keys = auth_types_for_event(version, draft.type, draft.sender, draft.state_key, draft.content)
        auth_ids = [state_before[key] for key in auth_keys if key in state_before]
        event_json: dict[str, Any] = {
            "type": draft.type,
            "sender": draft.sender,
            "content": draft.content,
            "origin_server_ts": now_ms(),
            "depth": depth,
        }
        if room_id is not None:
            event_json["room_id"] = room_id
        if draft.state_key is not None:
            event_json["state_key"] = draft.state_key
        if draft.redacts is not None and not version.redacts_in_content:
            event_json["redacts"] = draft.redacts
        if version.event_format is EventFormat.V1:
            event_json["event_id"] = f"${secrets.token_urlsafe(18)}:{self.server_name}"
            event_json["prev_events"] = [[p, {}] for p in prev_events]
            event_json["auth_events"] = [[a, {}] for a in auth_ids]
            event_json["origin"] = self.server_name
        else:
            event_json["prev_events"] = prev_events
            event_json["auth_events"] = auth_ids
        try:
            signing.add_content_hash(event_json)
        except ValueError as e:
            raise bad_json(f"Event content cannot be encoded: {e}")
        signing.sign_event(event_json, version, self.server_name, self.signing_key)
        return signing.event_from_pdu(event_json, version)

    def _check(self, event: Event, auth_state: dict[StateKey, Event]) -> None:
        # Step 2: format and size limits, then the authorization rules.
        try:
            check_pdu_format(event.json, event.room_version)
        except PduFormatError as e:
            try:
                size = len(canonical_json_str(event.json).encode())
            except ValueError:  # a value canonical JSON refuses (e.g. a huge integer): e names it
                raise bad_json(str(e))
            if size > MAX_EVENT_BYTES:
                raise too_large(f"Event is too large (over {MAX_EVENT_BYTES} bytes)")
            raise bad_json(str(e))
        try:
            check_auth_rules(event, auth_state)
        except AuthError as e:
            raise forbidden(str(e))

    async def _persist(
        self,
        event: Event,
        draft: EventDraft,
        prev_events: list[str],
        state_before_group: int | None,
        state_before: dict[StateKey, str],
        new_room: tuple[RoomVersion, bool] | None = None,
    ) -> None:
        # Step 3: the event, its edges, state and position, atomically.
        room_id = event.room_id
        internal = dict(draft.internal)
        if draft.txn is not None:
            internal["txn"] = list(draft.txn)
        if event.is_state():
            replaced = state_before.get(event.state_tuple)
            if replaced is not None:
                prev = await self.events.get_event(replaced)
                if prev is not None:
                    internal["replaces_state"] = replaced
                    internal["prev_content"] = dict(prev.content)
                    internal["prev_sender"] = prev.sender
        text = canonical_json_str(event.json)
        now = now_ms()
        txn = (draft.sender, draft.txn[0], draft.txn[1], now) if draft.txn is not None else None
        # Our cached view of the room's tip is only trusted again once the write succeeds.
        self._extremities.pop(room_id)
        with self.stream.allocate() as position:
            if event.is_state() or new_room is not None:
                async with self.db.transaction() as conn:
                    if new_room is not None:
                        version, is_public = new_room
                        await self.rooms.insert_room(conn, room_id, version.identifier, event.sender, now, is_public)
                    state_after = dict(state_before)
                    state_after[event.state_tuple] = event.event_id
                    group_after = await self.state.store_group(
                        conn, room_id, state_before_group, {event.state_tuple: event.event_id}, state_after
                    )
                    await self.state.update_current_state(
                        conn, room_id, event.state_tuple, event.event_id,
                        event.membership if event.type == "m.room.member" else None,
                    )
                    await self.events.insert_event(
                        conn, event, text, position, state_before_group, group_after, internal, prev_events, txn
                    )
                    if event.type == "m.room.member" and event.membership == "join":
                        await self.rooms.unforget(conn, event.state_key, room_id)
            else:
                # A message is one statement: atomic and committed in a single round trip.
                group_after = state_before_group
                await self.events.insert_event(
                    self.db.pool, event, text, position, state_before_group, group_after, internal, prev_events, txn
                )
            event.internal.update(internal)
            event.internal.update(
                stream_ordering=position, state_group_before=state_before_group,
                state_group_after=group_after, rejected=None, redacted_by=None,
            )
            self._extremities.set(room_id, [event.event_id])
            if new_room is not None:
                self.events.remember_room_version(room_id, new_room[0])
            if event.redacts is not None:
                self.events.invalidate(event.redacts)
            if event.type == "m.room.member":
                self._joined_members.pop(room_id)
            self.room_changes.record(room_id, position)
        # Step 4: wake the local users who should see it.
        await self._notify(event)

    async def _forward_extremities(self, room_id: str) -> list[str]:
        cached = self._extremities.get(room_id)
        if cached is None:
            cached = await self.events.get_forward_extremities(room_id)
            self._extremities.set(room_id, cached)
        return cached

    async def _notify(self, event: Event) -> None:
        joined = self._joined_members.get(event.room_id)
        if joined is None:
            members = await self.state.get_members(event.room_id, "join")
            joined = frozenset(members)
            self._joined_members.set(event.room_id, joined)
        to_wake = set(joined)
        if event.type == "m.room.member" and event.state_key:
            to_wake.add(event.state_key)
        self.on_persisted(event, to_wake)
