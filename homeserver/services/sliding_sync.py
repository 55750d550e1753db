"""Simplified sliding sync (MSC4186), as Synapse serves it to Element X.

A request names lists of the user's rooms, ordered by recency (``bump_stamp``)
and cut to ranges, plus room subscriptions. The user's rooms and what the lists
sort and filter on come from one query; only the rooms of the window get
timelines and state. A connection (user, device, conn_id) remembers in memory
what it was sent at each position it handed out, so a request with ``pos`` gets
only what changed; an unknown ``pos`` (e.g. after a restart) is 400
``M_UNKNOWN_POS`` and the client starts again.
Spec: https://github.com/matrix-org/matrix-spec-proposals/pull/4186
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import secrets
import time
from typing import Any, Callable

from homeserver.errors import MatrixError
from homeserver.services.auth import Requester
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.notifier import Notifier
from homeserver.services.receipts import ReceiptsService
from homeserver.services.sliding_sync_extensions import ExtensionsRequest, SlidingSyncExtensions, WindowRooms
from homeserver.services.sliding_sync_rooms import (
    MAX_TIMELINE_LIMIT, ReadsAhead, RoomBuilder, RoomConfig, RoomJob, SentRoom, known_or_read,
)
from homeserver.services.sync import SyncService
from homeserver.services.sync_rooms import guessed
from homeserver.services.tokens import SyncToken
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.cache import LruCache
from homeserver.storage.db import Database
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.sliding_sync import SlidingSyncStore, UserRoom
from homeserver.storage.streams import StreamChangeCache
from homeserver.storage.sync_queries import SyncQueries

# Connections kept in memory; the oldest past this start again with M_UNKNOWN_POS.
MAX_CONNECTIONS = 1000
# Positions remembered per connection.
KEPT_POSITIONS = 4
_POS = re.compile(r"([0-9a-f]{16})_([0-9]{1,18})")


@dataclasses.dataclass(frozen=True)
class ListFilters:
    is_dm: bool | None = None
    is_invite: bool | None = None
    is_encrypted: bool | None = None
    spaces: tuple[str, ...] | None = None
    # None in these lists stands for rooms without a type.
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] = ()


@dataclasses.dataclass(frozen=True)
class ListRequest:
    ranges: tuple[tuple[int, int], ...]
    config: RoomConfig
    filters: ListFilters = ListFilters()


@dataclasses.dataclass(frozen=True)
class SlidingSyncRequest:
    requester: Requester
    conn_id: str
    pos: str | None
    timeout_ms: int
    lists: dict[str, ListRequest]
    room_subscriptions: dict[str, RoomConfig]
    extensions: ExtensionsRequest = ExtensionsRequest()


@dataclasses.dataclass(frozen=True)
class _Position:
    token: SyncToken
    rooms: dict[str, SentRoom]
    # The user's m.direct as read then: read again only once account data has moved.
    m_direct: Any = None
    # The user's rooms then (each as user_rooms handed it out, handed out again while
    # unchanged), and those of the window: the next request's guesses of the rooms it
    # reads beside the memberships (SlidingSyncService._ahead).
    user_rooms: dict[str, UserRoom] = dataclasses.field(default_factory=dict)
    window: tuple[str, ...] = ()
    # What the request asked (lists, subscriptions, extensions): asked again with nothing
    # moved since, the answer would be empty.
    asked: Any = None


class _Connection:
    def __init__(self) -> None:
        # The position last handed out and the one before: a client whose response was
        # lost retries with the older one.
        self.positions: dict[int, _Position] = {}


class SlidingSyncService:
    def __init__(
        self, store: SlidingSyncStore, events: EventStore, rooms: RoomStore, account_data: AccountDataStore,
        ignored_users: IgnoredUsers, notifier: Notifier, room_changes: StreamChangeCache,
        current_token: Callable[[], SyncToken], builder: RoomBuilder, extensions: SlidingSyncExtensions,
        receipts: ReceiptsService, queries: SyncQueries,
    ):
        self.receipts = receipts
        self.queries = queries
        self.store = store
        self.events = events
        self.rooms = rooms
        self.account_data = account_data
        self.ignored_users = ignored_users
        self.notifier = notifier
        self.room_changes = room_changes
        self.current_token = current_token
        self.builder = builder
        self.extensions = extensions
        self._connections: LruCache[tuple[str, str, str], _Connection] = LruCache(MAX_CONNECTIONS)
        # Positions of an earlier process never match this one's.
        self._instance = secrets.token_hex(8)
        self._serial = itertools.count(1)

    @classmethod
    def beside(cls, sync: SyncService, db: Database) -> "SlidingSyncService":
        """Built on the stores and services that /sync v3 uses (one set, one notifier)."""
        return cls(
            SlidingSyncStore(db, sync.room_changes), sync.events, sync.rooms, sync.account_data, sync.ignored_users,
            sync.notifier, sync.room_changes, sync.current_token,
            RoomBuilder(sync.events, sync.state, sync.views, sync.notifications, sync.queries),
            SlidingSyncExtensions(sync.to_device, sync.e2e_keys, sync.account_data, sync.push_rules,
                                  sync.receipts, sync.typing),
            sync.receipts, sync.queries,
        )

    async def sync(self, request: SlidingSyncRequest) -> dict[str, Any]:
        who = request.requester
        key = (who.user_id, who.device_id, request.conn_id)
        if request.pos is None:
            # No pos: the connection starts again from nothing.
            connection = _Connection()
            self._connections.set(key, connection)
            previous_serial, previous = None, None
        else:
            connection = self._connections.get(key)
            match = _POS.fullmatch(request.pos)
            previous_serial = int(match.group(2)) if match and match.group(1) == self._instance else None
            previous = connection.positions.get(previous_serial) if connection and previous_serial else None
            if connection is None or previous is None:
                raise MatrixError(400, "M_UNKNOWN_POS", "Unknown position: start the connection again")
        # No lock across the long poll: a client drops a poll and asks again with the same
        # pos when its window changes, and must not wait for the poll it abandoned.
        deadline = time.monotonic() + request.timeout_ms / 1000
        asked = (request.lists, request.room_subscriptions, request.extensions)
        first = previous is not None
        while True:
            wake = self.notifier.token_for(who.user_id)
            if first:
                first = False
                # The same request at a position where every stream still is (Element X's
                # next long poll): nothing to send, so it waits before it reads anything,
                # as /sync v3's does. Compared after ``wake`` is taken.
                remaining = deadline - time.monotonic()
                if remaining > 0 and previous.asked == asked and previous.token == self.current_token():
                    await self.notifier.wait(wake, remaining)
                    continue
            result, rooms_sent, has_news = await self._once(request, previous)
            remaining = deadline - time.monotonic()
            if has_news or previous is None or remaining <= 0 or not await self.notifier.wait(wake, remaining):
                break
        serial = next(self._serial)
        # Kept: the position the client just used (its retry after a lost response) and
        # later ones; at most a few, should requests race on one connection.
        kept = sorted(s for s in connection.positions if previous_serial is not None and s >= previous_serial)
        # Only the newest keeps the rows of the user's rooms (a retry merely does without them).
        connection.positions = {s: _without_rows(connection.positions[s]) for s in kept[-(KEPT_POSITIONS - 1):]}
        connection.positions[serial] = _Position(
            result.pop("_token"), rooms_sent, result.pop("_m_direct"), result.pop("_user_rooms"), result.pop("_window"),
            asked)
        result["pos"] = f"{self._instance}_{serial}"
        return result

    async def _once(
        self, request: SlidingSyncRequest, previous: _Position | None,
    ) -> tuple[dict[str, Any], dict[str, SentRoom], bool]:
        user_id, device_id = request.requester.user_id, request.requester.device_id
        now = self.current_token()
        since = previous.token.capped_at(now) if previous is not None else None
        facts_ahead, state_ahead, rooms_ahead = self._ahead(request, previous, now)
        # The user's rooms, the window's membership events and the device's key counts, in
        # one query (/sync v3's), for the lists and the e2ee extension alike. Who sent the
        # user's membership events and where is read with them on a connection's first
        # request; then the rows of last time know it for the events unchanged since.
        rows_before = previous.user_rooms if previous is not None else {}
        member_reads = await self.queries.memberships(
            user_id, device_id, since.events if since is not None else None, now.events,
            with_senders=not rows_before)
        all_rooms = await self.store.user_rooms(member_reads, now.events, facts_ahead, rows_before)
        # Only a room left is forgotten (an invite or a join since brings it back, as in /sync v3).
        forgotten = (await self.rooms.forgotten_rooms(user_id)
                     if any(r.membership in ("leave", "ban") for r in all_rooms) else frozenset())
        ignored = await self.ignored_users.ignored_by(user_id)
        changed_membership = set(member_reads.own_changes(user_id)) if since is not None else set()
        by_id = {r.room_id: r for r in all_rooms
                 if not (r.room_id in forgotten and r.membership in ("leave", "ban"))}
        listed = [r for r in by_id.values() if _listed(r, user_id, changed_membership)]
        if previous is not None and since is not None and since.account_data >= now.account_data:
            m_direct = previous.m_direct
        else:
            m_direct = await self.account_data.get(user_id, GLOBAL, "m.direct")
        direct = _direct_rooms(m_direct)
        invite_ids = [r.membership_event_id for r in listed if r.membership == "invite"]
        # All invites in one query: few, and needed to filter the lists.
        invites = await self.events.get_events(invite_ids) if invite_ids else {}
        for room in listed:
            event = invites.get(room.membership_event_id)
            if event is not None and room.room_type is None and not room.encrypted:
                # A room of another server: what the lists filter on comes from the invite's stripped state.
                by_id[room.room_id] = _from_stripped(room, event.internal.get("invite_room_state", []))
        listed = [by_id[r.room_id] for r in listed]
        for event in invites.values():
            # An invite marked is_direct is a DM before the client records it in m.direct (as Synapse).
            if event.content.get("is_direct") is True:
                direct.add(event.room_id)
        # Spec: invites from ignored users are not sent to the client.
        listed = [r for r in listed if not (
            r.membership == "invite" and r.membership_event_id in invites
            and invites[r.membership_event_id].sender in ignored)]
        bumps = {r.room_id: _bump_stamp(r) for r in listed}
        listed.sort(key=lambda r: (-bumps[r.room_id], r.room_id))

        window: dict[str, RoomConfig] = {}
        by_list: dict[str, list[str]] = {}
        lists_out: dict[str, Any] = {}
        for name, wanted in request.lists.items():
            children = await self.store.space_children(list(wanted.filters.spaces)) if wanted.filters.spaces else None
            rooms = [r for r in listed if _passes(r, wanted.filters, direct, children)]
            lists_out[name] = {"count": len(rooms)}
            chosen: dict[str, None] = {}
            for start, end in wanted.ranges:
                for room in rooms[start:end + 1]:
                    chosen[room.room_id] = None
                    window[room.room_id] = window.get(room.room_id, wanted.config).merged(wanted.config)
            by_list[name] = list(chosen)
        subscriptions = []
        for room_id, config in request.room_subscriptions.items():
            # Only rooms the user has (or had) a membership in; others are left out, as Synapse does.
            if room_id in by_id:
                subscriptions.append(room_id)
                window[room_id] = window.get(room_id, config).merged(config)
                bumps.setdefault(room_id, _bump_stamp(by_id[room_id]))

        sent_before = previous.rooms if previous is not None else {}
        # Rooms where the user's own read receipts moved (e.g. read on another device):
        # their unread counts changed, so they are computed again.
        read_again: set[str] = set()
        if since is not None:
            already = [r for r in window if r in sent_before]
            for room_id, events in (await self.receipts.for_sync(
                    user_id, already, since.receipts, now.receipts)).items():
                if any(user_id in by_user for e in events for by_type in e["content"].values()
                       for by_user in by_type.values()):
                    read_again.add(room_id)
        rooms_sent = dict(sent_before)
        to_build = [r for r in window if _needs_build(
            sent_before.get(r), by_id[r], window[r], r in changed_membership or r in read_again, self.room_changes)]
        # The window's current state (with memberships, for the counts) in one query.
        current = await self._current_state(to_build, state_ahead)
        rooms_out: dict[str, Any] = {}
        jobs = []
        for room_id, config in window.items():
            if room_id in current:
                jobs.append(RoomJob(by_id[room_id], bumps[room_id], config, sent_before.get(room_id)))
            else:
                # Nothing new since the connection last had it: not even a query.
                sent = sent_before[room_id]
                rooms_sent[room_id] = sent.at(now)
        built = await self.builder.build_many(user_id, device_id, jobs, since, now, ignored, current, rooms_ahead)
        for room_id, (section, new_sent) in built.items():
            rooms_sent[room_id] = new_sent
            if section is not None:
                if room_id in direct:
                    section["is_dm"] = True
                rooms_out[room_id] = section
        # Rooms the window dropped stay at the position they were sent at, so that when
        # they come back they get everything they missed.
        sent_at = {r: (sent_before[r].token if r in sent_before else None) for r in window}
        extensions, ext_news = await self.extensions.build(
            request.extensions, user_id, device_id, since, now, WindowRooms(by_list, subscriptions, sent_at),
            member_reads)
        # Order of the rooms object follows the lists' order, most recent first.
        ordered = {r: rooms_out[r] for r in sorted(rooms_out, key=lambda r: (-bumps.get(r, 0), r))}
        result = {"lists": lists_out, "rooms": ordered, "extensions": extensions, "_token": now,
                  "_m_direct": m_direct, "_user_rooms": {r.room_id: r for r in all_rooms}, "_window": tuple(window)}
        return result, rooms_sent, bool(rooms_out) or ext_news

    def _ahead(
        self, request: SlidingSyncRequest, previous: _Position | None, now: SyncToken,
    ) -> tuple[asyncio.Future[Any] | None, asyncio.Future[Any] | None, ReadsAhead | None]:
        """Reads started before the memberships answer, on the guess that the rooms are
        those of the previous response: the facts of the user's rooms whose streams moved
        (remembered by the store, found there by user_rooms), and for the window's joined
        rooms whose streams moved, the rooms most likely to be built, their current state,
        timelines and unread counts. On the wake of a long poll these are the reads that
        would otherwise come one after the other; a wrong guess costs a read, and what it
        missed is read after."""
        if previous is None:
            return None, None, None
        facts = guessed(self.store.facts_at(list(previous.user_rooms), now.events))
        moved = [r for r in previous.window if r in previous.rooms and previous.rooms[r].membership == "join"
                 and self.room_changes.maybe_changed_since(r, previous.rooms[r].token.events)]
        if not moved:
            return facts, None, None
        state = guessed(self.store.current_state_of(moved))
        # Each room's timeline limit as build_many will ask it if the room is where it was:
        # the lists' (a room is in one list mostly) or its subscription's, whichever is more.
        in_lists = max((w.config.timeline_limit for w in request.lists.values()), default=0)
        windows = []
        for room_id in moved:
            subscribed = request.room_subscriptions.get(room_id)
            limit = max(in_lists, subscribed.timeline_limit if subscribed is not None else 0)
            windows.append((room_id, previous.rooms[room_id].token.events, now.events,
                            min(limit, MAX_TIMELINE_LIMIT) + 1))
        rooms = self.builder.read_ahead(
            request.requester.user_id, windows, now.events, self.ignored_users.ignored_by(request.requester.user_id))
        return facts, state, rooms

    async def _current_state(
        self, room_ids: list[str], ahead: asyncio.Future[Any] | None,
    ) -> dict[str, dict[tuple[str, str], tuple[str, str | None]]]:
        """The current state of these rooms: what ``_ahead`` read of them, and the rest."""
        return await known_or_read(room_ids, await ahead if ahead is not None else None, self.store.current_state_of)


def _without_rows(position: _Position) -> _Position:
    return dataclasses.replace(position, user_rooms={}) if position.user_rooms else position


def _needs_build(
    sent: SentRoom | None, room: UserRoom, config: RoomConfig, touched: bool, room_changes: StreamChangeCache,
) -> bool:
    """Whether a room of the window may have something to send (False: surely nothing)."""
    if sent is None or touched or sent.membership != room.membership or sent.required_state != config.required_state:
        return True
    return room_changes.maybe_changed_since(room.room_id, sent.token.events)


def _listed(room: UserRoom, user_id: str, changed_membership: set[str]) -> bool:
    """As Synapse: rooms the user is in, invited to or knocking on, banned or kicked from;
    a room they left themselves only when the leave is new to the connection."""
    if room.membership in ("join", "invite", "knock", "ban"):
        return True
    return room.membership_sender != user_id or room.room_id in changed_membership


def _bump_stamp(room: UserRoom) -> int:
    if room.membership == "join":
        return max(room.bump_stamp or room.membership_position, room.membership_position)
    # Activity after an invite, a knock or a leave is not the user's to see.
    return room.membership_position


def _from_stripped(room: UserRoom, stripped: Any) -> UserRoom:
    room_type, encrypted = room.room_type, room.encrypted
    for item in stripped if isinstance(stripped, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("content"), dict):
            continue
        if item.get("type") == "m.room.create" and isinstance(item["content"].get("type"), str):
            room_type = item["content"]["type"]
        if item.get("type") == "m.room.encryption":
            encrypted = True
    return dataclasses.replace(room, room_type=room_type, encrypted=encrypted)


def _direct_rooms(content: dict[str, Any] | None) -> set[str]:
    rooms: set[str] = set()
    for value in (content or {}).values():
        if isinstance(value, list):
            rooms.update(r for r in value if isinstance(r, str))
    return rooms


def _passes(room: UserRoom, f: ListFilters, direct: set[str], children: set[str] | None) -> bool:
    if f.is_dm is not None and (room.room_id in direct) != f.is_dm:
        return False
    if f.is_invite is not None and (room.membership == "invite") != f.is_invite:
        return False
    if f.is_encrypted is not None and room.encrypted != f.is_encrypted:
        return False
    if children is not None and room.room_id not in children:
        return False
    if f.room_types is not None and room.room_type not in f.room_types:
        return False
    return room.room_type not in f.not_room_types
