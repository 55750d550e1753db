"""The event pipeline: build, check, persist, notify (DESIGN.md).

Every event goes through here. Local events are built here (step 1); remote
events enter at the check step (``receive_remote``) once federation/inbound.py
has checked their format, signatures and hashes, so the same authorization
rules and the same writes apply to both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
import weakref
from typing import Any, Awaitable, Callable, Mapping

import asyncpg
import canonicaljson

from homeserver.errors import MatrixError, bad_json, forbidden, too_large
from homeserver.protocol import ids, signing
from homeserver.protocol.auth_rules import AuthError, auth_types_for_event, check_auth_events, check_auth_rules
from homeserver.protocol.canonical import event_json_text
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.pdu_checks import PduFormatError, check_pdu_format
from homeserver.protocol.room_versions import EventFormat, RoomVersion
from homeserver.services.clock import now_ms
from homeserver.storage.cache import LoadingCache, LruCache
from homeserver.storage.db import Database
from homeserver.storage.events import EventStore, RoomTip
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.services.state_resolution import StateResolver
from homeserver.services.cluster import POSITION_MARK
from homeserver.services.room_writer import RoomWriter, Solo, room_lock_key
from homeserver.storage.stream_positions import lock_room
from homeserver.storage.streams import OutlierPositions, StreamChangeCache, StreamIdGenerator

log = logging.getLogger(__name__)

MAX_PREV_EVENTS = 10
# A send refused because the room's state changed meanwhile on another process is built
# again on the new tip, under the room's advisory lock; after this many tries in all it is
# refused (503).
MAX_TIP_ATTEMPTS = 10
# Event ids per "gone" notification (about 50 bytes each, under NOTIFY's 8000).
PURGED_PER_NOTIFICATION = 100
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


class TipMoved(Exception):
    """The write of an event on the room's tip was refused: the tip had moved (another
    process wrote), or, when ``txn_event_id`` is set, the txn id was already used for it."""

    def __init__(self, txn_event_id: str | None):
        super().__init__(txn_event_id)
        self.txn_event_id = txn_event_id


@dataclasses.dataclass
class _Joined:
    """Who is joined to a room, as cached, and their servers (worked out when first asked)."""

    users: frozenset[str]
    servers: frozenset[str] | None = None


@dataclasses.dataclass
class _Placement:
    """Where a written event sits: what the persist step needs beyond the event itself."""

    state_before_group: int | None
    state_before: Mapping[StateKey, str] | None
    outlier: bool = False
    # Live events move the room's tip (extremities, current state, the events stream).
    live: bool = True
    rejected: str | None = None
    soft_failed: bool = False


def _auth_events_verdict(event: Event, auth_events: Mapping[str, Event], create: Event | None) -> str | None:
    """Step 4 on loaded events: the auth events all found and none rejected, and the auth rules
    pass against them (``create``: the room's create event in versions whose room id names it)."""
    missing = set(event.auth_event_ids) - auth_events.keys()
    if missing:
        return f"auth events not found: {sorted(missing)}"
    for auth_event in auth_events.values():
        if auth_event.internal.get("rejected"):
            return f"auth event {auth_event.event_id} was rejected"
    auth_state = {e.state_tuple: e for e in auth_events.values() if e.is_state()}
    if event.room_version.room_id_from_create_event and event.type != "m.room.create":
        if create is None or create.internal.get("rejected"):
            return "the room's create event is unknown or rejected"
        auth_state[("m.room.create", "")] = create
    try:
        check_auth_events(event, auth_events.values())
        check_auth_rules(event, auth_state)
    except AuthError as e:
        return str(e)
    return None


# A hook run after an event is written (the federation sender queues it for other servers).
PersistedHook = Callable[[Event], Awaitable[None]]


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
        resolver: StateResolver | None = None,
        low_positions: OutlierPositions | None = None,
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
        self.resolver = resolver or StateResolver(events, state)
        self.after_persist: list[PersistedHook] = []
        # Told the seconds each event's persist step took (homeserver/metrics.py), when set.
        self.persist_timer: Callable[[float], None] | None = None
        # Outliers and backfilled events are written below every live position, counting down,
        # so that no /sync reports them as new (set on first use without a shared sequence).
        self._low_position: int | None = None
        self.low_positions = low_positions
        # services/cluster.py when other processes may share the database (set by the wiring).
        self.cluster: Any = None
        self.writer_slots = asyncio.Semaphore(max(1, db.pool.get_max_size() // 2))
        # A room's lock lives while someone holds or awaits it, so the map stays small.
        self._room_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # The tip of each room and who is joined. The tip is the truth while this process
        # is the only writer; with others, what it was when they last told us of a write
        # (docs/scaling.md). Joined members are dropped when another process writes a
        # membership of the room (room_written_elsewhere).
        self._extremities: LruCache[str, RoomTip] = LruCache(10_000)
        # Rooms whose tip is being read: whether another process wrote in them meanwhile.
        self._tip_reads: dict[str, bool] = {}
        # A LoadingCache: a read of the members that raced with a membership write is
        # not kept (it may be from before the write; the federation sender's
        # destinations come from here).
        self._joined_members: LoadingCache[str, _Joined] = LoadingCache(10_000)

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
        async with self.room_lock(event.room_id), RoomWriter(self, event.room_id) as writer:
            self._check(event, {})
            await self._persist(event, draft, prev_events=[], state_before_group=None, state_before={},
                                new_room=(version, is_public), writer=writer)
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

    async def send(
        self, room_id: str, draft: EventDraft,
        countersign: Callable[[Event], Awaitable[Event]] | None = None,
    ) -> Event:
        """Build, check and persist a local event in an existing room.

        ``countersign`` is for an invite of a user on another server: that server
        must sign the event before it is written (its answer is what we store).
        """
        version = await self.events.get_room_version(room_id)
        if version is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
        # With other processes, a message is written on the tip as cached here, if the
        # room's state is still the one it was built on (checked by the write): a message
        # of another process written meanwhile only makes a fork. A state event, a
        # countersigned invite, and a message refused once go under the room's advisory lock.
        optimistic = draft.state_key is None and countersign is None
        async with self.room_lock(room_id):
            for attempt in range(MAX_TIP_ATTEMPTS):
                try:
                    async with RoomWriter(self, room_id, locked=not optimistic or attempt > 0) as writer:
                        return await self._send_on_tip(version, room_id, draft, countersign, writer)
                except TipMoved as moved:
                    if moved.txn_event_id is not None:
                        existing = await self.events.get_event(moved.txn_event_id)
                        if existing is not None:
                            return existing
                    self._extremities.pop(room_id)
        raise MatrixError(503, "M_UNKNOWN", "The room is too busy; try again")

    async def _send_on_tip(
        self, version: RoomVersion, room_id: str, draft: EventDraft,
        countersign: Callable[[Event], Awaitable[Event]] | None, writer: RoomWriter,
    ) -> Event:
        # A countersigned invite waits on another server: no position in flight meanwhile.
        txn = (draft.sender, *draft.txn) if draft.txn is not None else None
        room_tip = await writer.tip(with_position=countersign is None, txn=txn)
        tip = room_tip.entries[:MAX_PREV_EVENTS]
        if writer.txn_read and writer.txn_event_id is not None:
            # Under the room's lock: a retry that reached another process waits for the first.
            raise TipMoved(writer.txn_event_id)
        if not tip:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
        groups = [entry.state_group_after for entry in tip]
        state_group = groups[0] if len(set(groups)) == 1 else None
        state_before = await self.resolver.resolve_groups(version, groups)
        depth = max(entry.depth for entry in tip) + 1
        prev_ids = [entry.event_id for entry in tip]
        event = self._build(version, room_id, draft, prev_ids, state_before, depth)
        try:
            auth_state = await self._auth_state(event, state_before)
            text = self._check(event, auth_state)
        except MatrixError:
            # A retried send is answered with its first event, even where the room
            # would now refuse it (the sender left since, say); the write would tell,
            # but the event is refused before it is tried.
            existing = await self._event_of_txn(draft) if not writer.txn_read else None
            if existing is not None:
                return existing
            raise
        if countersign is not None:
            event = await countersign(event)
            text = None  # the invitee's server signed it too
        try:
            await self._persist(event, draft, prev_ids, state_group, state_before, writer=writer, tip=room_tip,
                                text=text)
        except BaseException:
            # Refused, or failed with its outcome unknown: the tip is read again at the next send.
            self._extremities.pop(room_id)
            raise
        return event

    def _remember_tip(self, room_id: str, event: Event, prev_events: list[str], group_after: int | None,
                      state_epoch: int | None, read_under_lock: RoomTip | None) -> None:
        """The room's tip once our event is written on it. ``read_under_lock``: the tip as
        read under the room's lock (or a new room's), the truth then. Otherwise the tip as
        cached now: what the other processes told us while our write was on its way is in
        it (their events beside ours, when they wrote on the same tip); when it was dropped
        meanwhile (news of a write we cannot place), it is read again at the next send.
        Extremities beyond the MAX_PREV_EVENTS cited stay (only after federation)."""
        base = read_under_lock if read_under_lock is not None else self._extremities.get(room_id)
        if base is not None:
            self._extremities.set(room_id, base.after(
                event.event_id, event.depth, group_after, prev_events, state_epoch))

    async def _event_of_txn(self, draft: EventDraft) -> Event | None:
        if draft.txn is None:
            return None
        event_id = await self.events.get_txn_event_id(draft.sender, *draft.txn)
        return await self.events.get_event(event_id) if event_id is not None else None

    async def cached_tip(self, room_id: str) -> RoomTip:
        """The room's forward extremities as this process knows them (the truth while it is
        the only writer; otherwise what an optimistic write is built on)."""
        cached = self._extremities.get(room_id)
        if cached is None:
            # Kept unless another process told us of a write of the room while we read: our
            # read may be from before it.
            self._tip_reads[room_id] = False
            try:
                cached = await self.events.tip_with_facts(room_id)
            finally:
                # (Reads of one room are serialised by its lock; another's pop would count as news.)
                told_meanwhile = self._tip_reads.pop(room_id, True)
            if not told_meanwhile:
                self._extremities.set(room_id, cached)
        return cached

    async def _auth_state(self, event: Event, state_before: dict[StateKey, str]) -> dict[StateKey, Event]:
        wanted = auth_types_for_event(
            event.room_version, event.type, event.sender, event.state_key, event.content
        )
        keys = set(wanted) | {("m.room.create", "")}
        auth_ids = {key: state_before[key] for key in keys if key in state_before}
        loaded = await self.events.get_events(auth_ids.values())
        return {key: loaded[event_id] for key, event_id in auth_ids.items() if event_id in loaded}

    def _build(
        self,
        version: RoomVersion,
        room_id: str | None,
        draft: EventDraft,
        prev_events: list[str],
        state_before: Mapping[StateKey, str],
        depth: int,
    ) -> Event:
        # Step 1 of the pipeline: the spec's auth events selection, then hash, sign, id.
        event_json = self._skeleton(version, room_id, draft, prev_events, state_before, depth)
        if version.event_format is EventFormat.V1:
            event_json["event_id"] = f"${secrets.token_urlsafe(18)}:{self.server_name}"
        return self.finish_event(event_json, version)

    def finish_event(self, event_json: dict[str, Any], version: RoomVersion) -> Event:
        """Hash and sign an event of ours (built here, or from a peer's make_join template)."""
        try:
            signing.add_content_hash(event_json)
        except ValueError as e:
            raise bad_json(f"Event content cannot be encoded: {e}")
        return signing.sign_and_identify(event_json, version, self.server_name, self.signing_key)

    def _skeleton(
        self,
        version: RoomVersion,
        room_id: str | None,
        draft: EventDraft,
        prev_events: list[str],
        state_before: Mapping[StateKey, str],
        depth: int,
    ) -> dict[str, Any]:
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
            event_json["prev_events"] = [[p, {}] for p in prev_events]
            event_json["auth_events"] = [[a, {}] for a in auth_ids]
            event_json["origin"] = self.server_name
        else:
            event_json["prev_events"] = prev_events
            event_json["auth_events"] = auth_ids
        return event_json

    async def template(self, room_id: str, draft: EventDraft) -> tuple[RoomVersion, dict[str, Any], dict[StateKey, str]]:
        """An unsigned event for another server to complete (make_join, make_leave, make_knock).

        Also checked against the auth rules here, so that a peer is told at once
        when the membership it asks for would be refused. Returns the room
        version, the template and the state it was built on.
        """
        version = await self.events.get_room_version(room_id)
        if version is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
        async with self.room_lock(room_id):
            if self.cluster is None or self.cluster.solo:
                prev_ids = [entry.event_id for entry in (await self.cached_tip(room_id)).entries]
            else:
                prev_ids = await self.events.get_forward_extremities(room_id)
            prevs = await self.events.get_events(prev_ids[:MAX_PREV_EVENTS])
            if not prevs:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
            groups = [e.internal["state_group_after"] for e in prevs.values()]
            state_before = await self.resolver.resolve_groups(version, groups)
            depth = max(e.depth for e in prevs.values()) + 1
        skeleton = self._skeleton(version, room_id, draft, list(prevs), state_before, depth)
        probe_json = skeleton
        if version.event_format is EventFormat.V1:
            skeleton.pop("origin", None)
            # The joining server names the event (v1, v2); the format check wants an id.
            probe_json = {**skeleton, "event_id": f"$template:{self.server_name}"}
        probe = Event(probe_json, "$template", version)
        self._check(probe, await self._auth_state(probe, state_before))
        return version, skeleton, state_before

    async def _write_optimistic(
        self, write: Callable[..., Awaitable[int | None]], notification: tuple[str, str, str] | None,
    ) -> tuple[int | None, str | None]:
        """The allocation's fetch for an optimistic write: (position, None) once written,
        (None, the event of the txn id or None) when refused."""
        try:
            return await write(self.db.pool, None, notification), None
        except TipMoved as moved:
            return None, moved.txn_event_id

    def _check(self, event: Event, auth_state: dict[StateKey, Event]) -> str:
        """Step 2: format and size limits, then the authorization rules. Returns the
        event's canonical text (what is stored), encoded once for the size and the write."""
        try:
            encoded = canonicaljson.encode_canonical_json(event.json)
        except (TypeError, ValueError) as e:  # a value canonical JSON refuses (e.g. a huge integer)
            raise bad_json(f"event cannot be encoded as canonical JSON: {e}")
        try:
            check_pdu_format(event.json, event.room_version, encoded)
        except PduFormatError as e:
            if len(encoded) > MAX_EVENT_BYTES:
                raise too_large(f"Event is too large (over {MAX_EVENT_BYTES} bytes)")
            raise bad_json(str(e))
        try:
            check_auth_rules(event, auth_state)
        except AuthError as e:
            raise forbidden(str(e))
        return encoded.decode()

    async def _persist(
        self,
        event: Event,
        draft: EventDraft,
        prev_events: list[str],
        state_before_group: int | None,
        state_before: dict[StateKey, str],
        new_room: tuple[RoomVersion, bool] | None = None,
        writer: RoomWriter | None = None,
        tip: RoomTip | None = None,
        text: str | None = None,
    ) -> None:
        """``tip``: the room's tip the event was built on (None: a new room's first event).
        ``text``: the event's canonical text, if already made (``_check``)."""
        # Step 3: the event, its edges, state and position, atomically.
        writer = writer or RoomWriter(self, event.room_id)
        started = time.perf_counter()
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
        text = text if text is not None else event_json_text(event.json)
        now = now_ms()
        txn = (draft.sender, draft.txn[0], draft.txn[1], now) if draft.txn is not None else None
        tip = tip if tip is not None else RoomTip((), None)
        single = not (event.is_state() or new_room is not None or state_before_group is None
                      or writer.conn is not None)
        group_after = state_before_group
        # The room's state epoch after the write: a state event's moves it.
        state_epoch = tip.state_epoch
        # What the write compares the room's epoch with: the tip's, but when the tip was read
        # under the room's lock (the truth then), or alone for a state event (which moves
        # the epoch before it writes the event, in its transaction).
        expected_epoch = tip.state_epoch if single or writer.optimistic else None

        async def write_on_tip(conn: Any, position: int | None,
                               notification: tuple[str, str, str] | None = None) -> int | None:
            try:
                written = await self.events.insert_on_tip(
                    conn, event, text, position, state_before_group, group_after, internal, txn,
                    room_lock_key(room_id), expected_epoch, notification)
            except asyncpg.DeadlockDetectedError:
                # Writers of the room locking rows in turn: tried again, as a refused write.
                raise TipMoved(None)
            if written.position is None:
                raise TipMoved(written.txn_event_id)
            return written.position

        notification = None
        if single and writer.optimistic:
            # The position is taken by the write itself (the sequence's next value, only if
            # it writes), which also tells the other processes as it commits: one round
            # trip, no lock held between statements.
            notification = self._write_notification(
                event, POSITION_MARK, prev_events, state_before_group, group_after, internal, state_epoch)
            allocation = self.stream.allocate(
                fetch=lambda: self._write_optimistic(write_on_tip, notification),
                announced=notification is not None)
        else:
            allocation = writer.allocation or self.stream.allocate(writer.conn)
        async with allocation as position:
            if position is None:
                raise TipMoved(allocation.extra)
            if not single:
                async with writer.transaction() as conn:
                    if new_room is not None:
                        version, is_public = new_room
                        await self.rooms.insert_room(conn, room_id, version.identifier, event.sender, now, is_public)
                    if state_before_group is None and state_before:
                        # The resolved state of a fork: stored once, as a snapshot.
                        state_before_group = await self.state.store_group(
                            conn, room_id, None, state_before, dict(state_before))
                        group_after = state_before_group
                    if event.is_state():
                        state_after = dict(state_before)
                        state_after[event.state_tuple] = event.event_id
                        group_after = await self.state.store_group(
                            conn, room_id, state_before_group, {event.state_tuple: event.event_id}, state_after
                        )
                        state_epoch = await self.state.update_current_state(
                            conn, room_id, event.state_tuple, event.event_id,
                            event.membership if event.type == "m.room.member" else None, position,
                        )
                    if self.cluster is not None and not self.cluster.solo:
                        # Delivered at the commit, with the event (none if it rolls back).
                        notification = self._write_notification(
                            event, position, prev_events, state_before_group, group_after, internal,
                            state_epoch)
                    # Refused (the state moved, the txn id is taken): the transaction rolls back.
                    await write_on_tip(conn, position, notification)
                    if event.type == "m.room.member" and event.membership == "join":
                        await self.rooms.unforget(conn, event.state_key, room_id)
                if notification is not None:
                    allocation.announced_by_write()
            elif not writer.optimistic:
                # Alone, a message is one statement: atomic and committed in a single round trip.
                await write_on_tip(self.db.pool, position)
            event.internal.update(internal)
            event.internal.update(
                stream_ordering=position, state_group_before=state_before_group,
                state_group_after=group_after, rejected=None, redacted_by=None,
            )
            self.events.remember(event)
            self._remember_tip(room_id, event, prev_events, group_after, state_epoch,
                               tip if writer.conn is not None or new_room is not None else None)
            if new_room is not None:
                self.events.remember_room_version(room_id, new_room[0])
            if event.redacts is not None:
                self.events.invalidate(event.redacts)
            if event.type == "m.room.member":
                self._joined_members.forget([room_id])
            self.room_changes.record(room_id, position)
            if notification is None:
                self._tell_others(event, prev_events, state_epoch)
        if self.persist_timer is not None:
            self.persist_timer(time.perf_counter() - started)
        # Step 4: wake the local users who should see it.
        await self._notify(event)

    # Remote events (federation/inbound.py and federation/joins.py call these)

    async def receive_remote(
        self,
        event: Event,
        *,
        state_before: Mapping[StateKey, str] | None = None,
        outlier: bool = False,
        backfilled: bool = False,
        internal: dict[str, Any] | None = None,
    ) -> str | None:
        """Check a remote event against the auth rules and write it; the rejection reason or None.

        The caller has checked format, signatures and content hash (steps 1-3 of
        the spec's "Checks performed on receipt of a PDU") and made sure the
        event's auth events are stored. Here: step 4 (the event's own auth
        events), step 5 (the state before the event, resolved from its prev
        events unless ``state_before`` is given, as after a /state_ids lookup)
        and step 6 (soft failure against the current state). A rejected event
        is stored as rejected and never becomes state; a soft-failed one is
        stored but moves nothing. Outliers (auth chains, invites of rooms we are
        not in) only pass step 4.
        """
        room_id = event.room_id
        async with self.room_lock(room_id):
            known = await self.events.known_event_ids([event.event_id])
            if event.event_id in known and (outlier or not known[event.event_id]):
                return None  # already stored as well as it will be
            rejected = await self._check_against_auth_events(event)
            group: int | None = None
            resolved: Mapping[StateKey, str] | None = None
            soft_failed = False
            if not outlier:
                if state_before is None:
                    prevs = await self.events.get_events(event.prev_event_ids)
                    if len(prevs) != len(set(event.prev_event_ids)) or any(
                            p.internal.get("state_group_after") is None for p in prevs.values()):
                        raise ValueError(f"{event.event_id}: prev events missing; the caller must give its state")
                    groups = [p.internal["state_group_after"] for p in prevs.values()]
                    if len(set(groups)) == 1:
                        group = groups[0]
                    resolved = await self.resolver.resolve_groups(event.room_version, groups)
                else:
                    resolved = dict(state_before)
                if rejected is None:
                    # Step 5: the state before the event.
                    try:
                        check_auth_rules(event, await self._auth_state(event, resolved))
                    except AuthError as e:
                        rejected = f"state before: {e}"
                if rejected is None and not backfilled:
                    # Step 6: the current state; a failure here only soft-fails the event.
                    # Only the entries the auth rules look at, not the whole (maybe huge) state.
                    wanted = auth_types_for_event(
                        event.room_version, event.type, event.sender, event.state_key, event.content)
                    current = await self.state.get_current_state_ids_for(
                        room_id, list(set(wanted) | {("m.room.create", "")}))
                    # Without a create event we know the room only by an out-of-band invite
                    # (this is our join over federation): there is nothing to compare with.
                    if ("m.room.create", "") in current:
                        try:
                            check_auth_rules(event, await self._auth_state(event, current))
                        except AuthError as e:
                            log.info("soft-failing %s: %s", event.event_id, e)
                            soft_failed = True
            placement = _Placement(
                # A soft-failed event is kept out of every timeline, but keeps its state groups.
                state_before_group=group, state_before=resolved, outlier=outlier or soft_failed,
                live=not outlier and not backfilled and rejected is None and not soft_failed,
                rejected=rejected, soft_failed=soft_failed,
            )
            await self._persist_remote(event, placement, internal or {}, replace_outlier=event.event_id in known)
        if placement.live:
            await self._notify(event)
        return rejected

    async def store_out_of_band_membership(self, event: Event, internal: dict[str, Any]) -> None:
        """An invite from, or a rejection sent to, a room this server is not in.

        The event is an outlier (we do not know the room's state), but it has a
        live position and sets the user's membership, so that /sync shows the
        invite (with its stripped state) or the rejection.
        """
        room_id = event.room_id
        text = event_json_text(event.json)
        async with self.room_lock(room_id):
            known = await self.events.known_event_ids([event.event_id])
            async with self.stream.allocate() as position:
                async with self._solo_write() as solo, self.db.transaction() as conn:
                    if not solo:
                        await lock_room(conn, room_lock_key(room_id))
                    if event.event_id in known:
                        await self.events.delete_outlier(conn, event.event_id)
                    await self.events.insert_event(
                        conn, event, text, position, None, None, internal, [], None,
                        becomes_extremity=False, outlier=True,
                    )
                    await self.state.update_current_state(
                        conn, room_id, event.state_tuple, event.event_id, event.membership, position)
                event.internal.update(internal)
                event.internal.update(stream_ordering=position, state_group_before=None, state_group_after=None,
                                      rejected=None, redacted_by=None, outlier=True)
                self.room_changes.record(room_id, position)
                self._tell_others(event)
        self.on_persisted(event, {event.state_key})

    async def _check_against_auth_events(self, event: Event) -> str | None:
        """Step 4: the event passes the auth rules against its own auth events, none rejected."""
        auth_events = await self.events.get_events(event.auth_event_ids)
        create = None
        if event.room_version.room_id_from_create_event and event.type != "m.room.create":
            create = await self.events.get_event("$" + event.room_id[1:])
        return _auth_events_verdict(event, auth_events, create)

    async def receive_remote_outliers(self, events: list[Event]) -> dict[str, str | None]:
        """``receive_remote(event, outlier=True)`` for many events at once: event id -> rejection or None.

        The same step 4 for each, against auth events among ``events`` (given
        before the events they authorise, as inbound's topological_by_auth
        orders them) or stored, read in one query; then all are written in one
        transaction. Events already stored are left as they are (None).
        """
        results: dict[str, str | None] = {}
        by_room: dict[str, list[Event]] = {}
        for event in events:
            by_room.setdefault(event.room_id, []).append(event)
        for room_id, room_events in by_room.items():
            async with self.room_lock(room_id):
                results.update(await self._receive_room_outliers(room_id, room_events))
        return results

    async def _receive_room_outliers(self, room_id: str, events: list[Event]) -> dict[str, str | None]:
        known = await self.events.known_event_ids([e.event_id for e in events])
        fresh = list({e.event_id: e for e in events if e.event_id not in known}.values())
        results: dict[str, str | None] = {e.event_id: None for e in events}
        if not fresh:
            return results
        batch = {e.event_id: e for e in fresh}
        wanted = {a for e in fresh for a in e.auth_event_ids if a not in batch}
        create_id = "$" + room_id[1:]
        if any(e.room_version.room_id_from_create_event for e in fresh) and create_id not in batch:
            wanted.add(create_id)
        stored = await self.events.get_events(wanted)
        # Checked so far, in order: an auth event later in the list counts as not found, as one by one.
        checked: dict[str, Event] = {}
        rows: list[tuple[Event, str, int, str | None]] = []
        for event in fresh:
            auth_events = {}
            for auth_id in event.auth_event_ids:
                auth_event = checked.get(auth_id) or stored.get(auth_id)
                if auth_event is not None:
                    auth_events[auth_id] = auth_event
            create = None
            if event.room_version.room_id_from_create_event and event.type != "m.room.create":
                create = checked.get(create_id) or stored.get(create_id)
            rejected = _auth_events_verdict(event, auth_events, create)
            if rejected:
                log.info("outlier %s rejected: %s", event.event_id, rejected)
            event.internal.update(rejected=rejected)
            checked[event.event_id] = event
            results[event.event_id] = rejected
            rows.append((event, event_json_text(event.json), await self._next_low_position(), rejected))
        async with self.db.transaction() as conn:
            await self.events.insert_outliers(conn, rows)
        for event, _, position, rejected in rows:
            event.internal.update(
                stream_ordering=position, state_group_before=None, state_group_after=None,
                rejected=rejected, redacted_by=None, outlier=True,
            )
            if event.redacts is not None and rejected is None:
                self.events.invalidate(event.redacts)
        return results

    async def _next_low_position(self) -> int:
        if self.low_positions is not None:
            return await self.low_positions.next()
        if self._low_position is None:
            self._low_position = min(0, await self.events.lowest_stream_ordering())
        self._low_position -= 1
        return self._low_position

    async def _persist_remote(
        self, event: Event, placement: _Placement, internal: dict[str, Any], replace_outlier: bool
    ) -> None:
        started = time.perf_counter()
        room_id = event.room_id
        text = event_json_text(event.json)
        if placement.soft_failed:
            internal = {**internal, "soft_failed": True}
        if not placement.live:
            await self._write_remote(event, placement, internal, text, await self._next_low_position(), replace_outlier)
            return
        self._extremities.pop(room_id)
        async with self.stream.allocate() as position:
            await self._write_remote(event, placement, internal, text, position, replace_outlier)
            self.room_changes.record(room_id, position)
            self._tell_others(event)
            if event.redacts is not None:
                self.events.invalidate(event.redacts)
            if event.type == "m.room.member":
                self._joined_members.forget([room_id])
        if self.persist_timer is not None:
            self.persist_timer(time.perf_counter() - started)

    async def _write_remote(
        self, event: Event, placement: _Placement, internal: dict[str, Any], text: str, position: int,
        replace_outlier: bool,
    ) -> None:
        room_id = event.room_id
        state_before = placement.state_before
        async with self._solo_write() as solo, self.db.transaction() as conn:
            if placement.live and not solo:
                # Serialised with the other processes' writes of the room (its tip, its current state).
                await lock_room(conn, room_lock_key(room_id))
            if replace_outlier:
                await self.events.delete_outlier(conn, event.event_id)
            group_before = group_after = None
            if state_before is not None:
                group_before = placement.state_before_group
                if group_before is None:
                    group_before = await self.state.store_group(conn, room_id, None, state_before, dict(state_before))
                group_after = group_before
                if event.is_state() and placement.rejected is None:
                    replaced = state_before.get(event.state_tuple)
                    if replaced is not None:
                        prev = await self.events.get_event(replaced)
                        if prev is not None:
                            internal.update(replaces_state=replaced, prev_content=dict(prev.content),
                                            prev_sender=prev.sender)
                    state_after = {**state_before, event.state_tuple: event.event_id}
                    group_after = await self.state.store_group(
                        conn, room_id, group_before, {event.state_tuple: event.event_id}, state_after)
            becomes_extremity = placement.live and not await self.events.is_referenced_as_prev(event.event_id)
            tip_groups_before = await self._tip_groups(conn, room_id) if placement.live else None
            await self.events.insert_event(
                conn, event, text, position, group_before, group_after, internal, event.prev_event_ids, None,
                becomes_extremity=becomes_extremity, outlier=placement.outlier, rejected_reason=placement.rejected,
            )
            if placement.live and not becomes_extremity:
                # A later event came first (an invite kept out of band, say): this one is no
                # tip, but the events it follows are not either any more.
                await self.events.remove_forward_extremities(conn, room_id, event.prev_event_ids)
            if placement.live:
                await self._update_current_state(conn, event, group_after, tip_groups_before, position)
        event.internal.update(internal)
        event.internal.update(
            stream_ordering=position, state_group_before=group_before, state_group_after=group_after,
            rejected=placement.rejected, redacted_by=None, outlier=placement.outlier,
        )

    async def _tip_groups(self, conn: Any, room_id: str) -> list[int]:
        rows = await conn.fetch(
            "SELECT e.state_group_after FROM forward_extremities f"
            " JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1",
            room_id,
        )
        return [r["state_group_after"] for r in rows if r["state_group_after"] is not None]

    async def _update_current_state(
        self, conn: Any, event: Event, group_after: int | None, tip_groups_before: list[int] | None,
        position: int,
    ) -> None:
        """The current state is the resolved state of the room's forward extremities
        (``position``: the event's, that of the write)."""
        room_id = event.room_id
        groups = await self._tip_groups(conn, room_id)
        if not groups:
            return
        if tip_groups_before and set(groups) == set(tip_groups_before):
            # The tips' states are those the current state was resolved from (a message
            # on top of the tip, the common case): nothing to compare, nothing to write.
            return
        if set(groups) == {group_after}:
            new_state = dict(await self.state.get_state(group_after))
        else:
            new_state = await self.resolver.resolve_groups(event.room_version, groups)
        current = await self.state.get_current_state_ids(room_id)
        changed = {k: v for k, v in new_state.items() if current.get(k) != v}
        removed = [k for k in current if k not in new_state]
        members = await self.events.get_events([v for k, v in changed.items() if k[0] == "m.room.member"
                                                and v != event.event_id])
        if event.event_id in changed.values():
            members[event.event_id] = event
        delta: dict[StateKey, tuple[str, str | None] | None] = {k: None for k in removed}
        for key, event_id in changed.items():
            membership = None
            if key[0] == "m.room.member":
                member = members.get(event_id)
                membership = member.membership if member is not None else None
            delta[key] = (event_id, membership)
        if delta:
            await self.state.apply_current_state_delta(conn, room_id, delta, position)
            joined = [k[1] for k, v in delta.items() if k[0] == "m.room.member" and v and v[1] == "join"]
            for user_id in joined:
                await self.rooms.unforget(conn, user_id, room_id)

    def _solo_write(self) -> Any:
        """``async with``: True while no other process writes (a newcomer waits for the block to end)."""
        if self.cluster is None:
            return Solo()
        return self.cluster.solo_write()

    def _tell_others(self, event: Event, on_tip: list[str] | None = None, state_epoch: int | None = None) -> None:
        """Before the position is announced finished (still inside its allocation): the other
        processes record the room as changed before their streams move past the event."""
        cluster = self.cluster
        if cluster is None or cluster.solo:
            return
        cluster.send(self._event_item(event, event.internal["stream_ordering"], on_tip,
                                      event.internal.get("state_group_after"), state_epoch))

    def _write_notification(
        self, event: Event, position: Any, prev_events: list[str], group_before: int | None,
        group_after: int | None, internal: dict[str, Any], state_epoch: int | None,
    ) -> tuple[str, str, str] | None:
        """What a write on the tip NOTIFYs as it commits (``Cluster.write_notification``):
        the event item with the event itself when it fits, else without. The event goes
        as JSON, not as its stored text inside the payload's JSON: the receiver parses
        it once, and no quote of it is escaped."""
        body = {"j": event.json, "i": internal, "v": event.room_version.identifier, "g": [group_before, group_after]}
        for with_body in (body, None):
            notification = self.cluster.write_notification(
                self.stream.name, self.stream.own_bound(),
                self._event_item(event, position, prev_events, group_after, state_epoch, with_body))
            if notification is not None:
                return notification
        return None

    @staticmethod
    def _event_item(event: Event, position: Any, on_tip: list[str] | None, group_after: int | None,
                    state_epoch: int | None = None, body: dict[str, Any] | None = None) -> list[Any]:
        """The cluster's "ev" item (services/cluster_hooks.py). ``on_tip``: the prev events
        of a local event written on the tip, which it replaced there; the others then
        update their cached tip (with the event's depth and state group, and the room's
        state epoch after the write) instead of reading it again. ``body``: the event as
        stored (its JSON, internal facts, room version and state groups), which the others
        keep in their event cache, so that the /sync it wakes there does not read it back."""
        membership = event.membership if event.type == "m.room.member" else None
        tip = [on_tip, event.depth, group_after, state_epoch] if on_tip is not None else None
        item = ["ev", event.room_id, position, event.event_id,
                event.state_key if membership is not None else None, membership, event.redacts, tip]
        if body is not None:
            item.append(body)
        return item

    def tell_purged(self, event_ids: list[str], room_id: str | None = None) -> None:
        """Events (with ``room_id``, a whole room) were purged here: the other processes drop
        them from their caches (services/cluster_hooks.py "gone"), in notifications of a
        size NOTIFY takes."""
        cluster = self.cluster
        if cluster is None or cluster.solo:
            return
        for start in range(0, max(len(event_ids), 1), PURGED_PER_NOTIFICATION):
            cluster.send(["gone", room_id, event_ids[start:start + PURGED_PER_NOTIFICATION]])

    def room_written_elsewhere(self, room_id: str, membership: bool, event_id: str | None = None,
                               tip: list[Any] | None = None) -> None:
        """Another process wrote an event of the room: what we know of its tip (and of
        who is joined, for a membership) may be old. ``tip`` ([replaced prev events,
        depth, state group after, the room's state epoch after]): the event was written
        on the tip, which it replaced (those of them still there)."""
        if room_id in self._tip_reads:
            self._tip_reads[room_id] = True
        cached = self._extremities.get(room_id)
        if cached is not None and tip is not None and event_id is not None and len(tip) == 4:
            replaced, depth, group, state_epoch = tip
            self._extremities.set(room_id, cached.after(event_id, depth, group, replaced, state_epoch))
        else:
            self._extremities.pop(room_id)
        if membership:
            self._joined_members.forget([room_id])

    def forget_rooms(self) -> None:
        """Back to being the only writer: the rooms' tips as cached may predate the others' writes."""
        self._extremities = LruCache(10_000)
        self._joined_members.forget()

    async def joined_members(self, room_id: str) -> frozenset[str]:
        return (await self._joined(room_id)).users

    def cached_joined_members(self, room_id: str) -> frozenset[str] | None:
        """The joined members if cached (None: ``joined_members`` would read them)."""
        joined = self._joined_members.peek(room_id)
        return joined.users if joined is not None else None

    async def joined_servers(self, room_id: str) -> frozenset[str]:
        """The servers of the joined members (the destinations of the room's events)."""
        joined = await self._joined(room_id)
        if joined.servers is None:
            joined.servers = frozenset(
                server for server in map(ids.server_name_of, joined.users) if server is not None)
        return joined.servers

    async def _joined(self, room_id: str) -> "_Joined":
        return await self._joined_members.get(room_id, self._load_joined)

    async def _load_joined(self, room_id: str) -> "_Joined":
        return _Joined(frozenset(await self.state.get_members(room_id, "join")))

    async def _notify(self, event: Event) -> None:
        to_wake = set(await self.joined_members(event.room_id))
        if event.type == "m.room.member" and event.state_key:
            to_wake.add(event.state_key)
        self.on_persisted(event, to_wake)
        for hook in self.after_persist:
            try:
                await hook(event)
            except Exception:  # the event is stored; a failing hook must not fail the send
                log.exception("after-persist hook failed for %s", event.event_id)
