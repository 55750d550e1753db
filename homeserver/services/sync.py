"""GET /sync: initial and incremental, with long polling.

An incremental sync reads only rows after its token (DESIGN.md); rooms with
nothing new since the token are skipped without a query, thanks to the
stream change cache. The rooms that are sent are built together
(sync_rooms.py), so a response costs a fixed number of queries whatever the
number of rooms (issue 7; tests/client/test_sync_query_counts.py).
Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from homeserver.protocol.client_format import stripped_state_event
from homeserver.protocol.filters import SyncFilter
from homeserver.services.auth import Requester
from homeserver.services.e2e_keys import E2eKeyService
from homeserver.services.event_views import EventViews
from homeserver.services.ignored_users import IGNORED_USER_LIST, IgnoredUsers
from homeserver.services.notifications import NotificationCounter
from homeserver.services.notifier import Notifier
from homeserver.services.presence import PresenceService
from homeserver.services.push_rules import PUSH_RULES_TYPE, PushRulesService
from homeserver.services.receipts import ReceiptsService
from homeserver.services.sync_rooms import RoomJob, SyncRooms
from homeserver.services.to_device import ToDeviceService
from homeserver.services.tokens import SyncToken
from homeserver.services.typing import TypingService
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.cache import LruCache
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamChangeCache, StreamIdGenerator
from homeserver.storage.sync_queries import Memberships, SyncQueries

# Devices whose joined rooms are remembered for guessing the rooms of their next sync
# (as many as LazyMembers remembers; a device beyond them is merely not guessed for).
LAST_JOINED_DEVICES = 1000

@dataclasses.dataclass(frozen=True)
class SyncRequest:
    requester: Requester
    since: SyncToken | None
    timeout_ms: int
    full_state: bool
    filter: SyncFilter
    use_state_after: bool = False
    # online (the default), unavailable or offline (leave presence alone).
    set_presence: str = "online"


class SyncService:
    def __init__(
        self, events: EventStore, state: StateStore, rooms: RoomStore, account_data: AccountDataStore,
        views: EventViews, notifier: Notifier, event_stream: StreamIdGenerator,
        account_data_stream: StreamIdGenerator, room_changes: StreamChangeCache,
        receipts: ReceiptsService, typing: TypingService, e2e_keys: E2eKeyService,
        to_device: ToDeviceService, push_rules: PushRulesService, notifications: NotificationCounter,
        presence: PresenceService, ignored_users: IgnoredUsers | None = None,
        room_builder: SyncRooms | None = None,
    ):
        self.room_builder = room_builder or SyncRooms(
            events, state, views, notifications, SyncQueries(events.db))
        self.queries = self.room_builder.queries
        self.ignored_users = ignored_users or IgnoredUsers(account_data)
        self.events = events
        self.state = state
        self.rooms = rooms
        self.account_data = account_data
        self.views = views
        self.notifier = notifier
        self.event_stream = event_stream
        self.account_data_stream = account_data_stream
        self.room_changes = room_changes
        self.push_rules = push_rules
        self.notifications = notifications
        self.receipts = receipts
        self.typing = typing
        self.e2e_keys = e2e_keys
        self.to_device = to_device
        self.presence = presence
        # Each device's joined rooms at its last sync (read_ahead's guess).
        self._last_joined: LruCache[tuple[str, str], tuple[str, ...]] = LruCache(LAST_JOINED_DEVICES)

    def current_token(self) -> SyncToken:
        return SyncToken(
            self.event_stream.current(), self.account_data_stream.current(),
            receipts=self.receipts.stream.current(), typing=self.typing.position(),
            to_device=self.to_device.stream.current(),
            device_lists=self.e2e_keys.stream.current(),
            presence=self.presence.stream.current(),
        )

    async def sync(self, request: SyncRequest) -> dict[str, Any]:
        user_id = request.requester.user_id
        deadline = time.monotonic() + request.timeout_ms / 1000
        # Before the token is taken: the syncer's own change is then behind it.
        await self.presence.user_syncing(user_id, request.set_presence)
        if request.since is not None:
            since, before = request.since, self.current_token()
            # A token from another process may be a little ahead of this one's streams (its
            # notifications are on their way): wait for them rather than send events again.
            await self.notifier.catch_up(lambda: since.capped_at(self.current_token()) != since)
            # Still ahead (e.g. a token given out before a database restore), it would hide
            # every new event until the streams caught up with it: read it as where we were
            # before waiting (what came meanwhile is news).
            now = self.current_token().positions()
            request = dataclasses.replace(request, since=SyncToken(*(
                s if s <= n else min(s, b) for s, n, b in zip(since.positions(), now, before.positions()))))
        first = True
        while True:
            wake = self.notifier.token_for(user_id)
            if first and request.since is not None and not request.full_state:
                first = False
                # Nothing moved since the token (as after every response the client got):
                # the response would be empty, so the long poll waits before it reads
                # anything, as Synapse's does, and a client waiting for news costs one
                # /sync per wake, not two. Compared after ``wake`` is taken: a move after
                # the comparison wakes it.
                remaining = deadline - time.monotonic()
                if remaining > 0 and request.since == self.current_token():
                    await self.notifier.wait(wake, remaining)
                    continue
            result, has_news = await self._sync_once(request)
            remaining = deadline - time.monotonic()
            if has_news or request.since is None or request.full_state or remaining <= 0:
                return result
            if not await self.notifier.wait(wake, remaining):
                return result

    async def _sync_once(self, request: SyncRequest) -> tuple[dict[str, Any], bool]:
        user_id = request.requester.user_id
        since = request.since
        now = self.current_token()
        room_filter = request.filter.room
        device = (user_id, request.requester.device_id)
        # The rooms whose streams moved among those of the device's last sync: most likely
        # the rooms to send, whose reads can start now (a wrong guess costs a read).
        ahead = None
        if since is not None and not request.full_state:
            guessed = self.room_changes.changed_among(self._last_joined.get(device) or (), since.events)
            if guessed:
                ahead = self.room_builder.read_ahead(
                    user_id, request.filter, since.events, now.events, guessed,
                    self.ignored_users.ignored_by(user_id))
        # Independent reads, together; a stream that has not moved since the token is not asked.
        # The user's rooms come with the membership events of the window in them (the user's
        # own, and those the device lists and presence look for) and the device's key
        # counts: one round trip.
        member_reads, account_data, ignored = await asyncio.gather(
            self.queries.memberships(
                user_id, request.requester.device_id, since.events if since is not None else None, now.events),
            self.account_data.changed_since(user_id, since.account_data if since else 0, now.account_data)
            if since is None or since.account_data < now.account_data else _nothing({}),
            self.ignored_users.ignored_by(user_id),
        )
        memberships = member_reads.rooms
        changed_membership = member_reads.own_changes(user_id)
        # A changed ignore list may have hidden invites now to be shown: they are all sent again.
        ignore_list_changed = IGNORED_USER_LIST in account_data.get(GLOBAL, {})
        allowed = memberships if room_filter.allows_all_rooms else {
            r: m for r, m in memberships.items() if room_filter.allows_room(r)}
        joined = [r for r, (m, _) in allowed.items() if m == "join"]
        self._last_joined.set(device, tuple(joined))
        receipts = await self.receipts.for_sync(user_id, joined, since.receipts if since else 0, now.receipts)
        typing = self.typing.for_sync(joined, since.typing if since else None)

        join: dict[str, Any] = {}
        invite: dict[str, Any] = {}
        leave: dict[str, Any] = {}
        knock: dict[str, Any] = {}
        # The rooms whose membership may matter to this response: all of them at first (and
        # when a changed ignore list may show invites hidden until now), else those where
        # the user's membership changed since the token (few: not a loop over 500 rooms).
        if since is None or ignore_list_changed:
            candidates = allowed
        else:
            candidates = {r: allowed[r] for r in changed_membership if r in allowed}

        # Joined rooms: those whose streams moved since the token (the stream change cache
        # answers without a query), and those the user joined since (all of it then).
        newly: set[str] = set()
        if since is not None:
            joins_since = [r for r, (m, _) in candidates.items() if m == "join"]
            newly = set(joins_since) - await self.room_builder.was_joined_at(user_id, joins_since, since.events)
        if newly:
            # The room is new to the client: all its receipts, and typing if any.
            receipts.update(await self.receipts.for_sync(user_id, list(newly), 0, now.receipts))
            typing.update(self.typing.for_sync(list(newly), None))
        jobs: list[RoomJob] = []
        moved = set(self.room_changes.changed_among(joined, since.events)) if since is not None else set()
        for room_id in joined:
            if since is None or request.full_state or room_id in newly or room_id in moved \
                    or room_id in account_data or room_id in receipts or room_id in typing:
                jobs.append(RoomJob(
                    room_id, since if room_id not in newly else None, now.events, account_data.get(room_id, {}),
                    currently_joined=True,
                    ephemeral=([typing[room_id]] if room_id in typing else []) + receipts.get(room_id, []),
                ))

        # Invites, knocks and left rooms: their membership events, read together. Which rooms
        # the user forgot matters only when a left room could be shown.
        forgotten: set[str] | frozenset[str] = frozenset()
        if any(m in ("leave", "ban") and ((since is None and room_filter.include_leave)
                                          or (since is not None and r in changed_membership))
               for r, (m, _) in candidates.items()):
            forgotten = await self.rooms.forgotten_rooms(user_id)
        wanted: dict[str, str] = {}
        for room_id, (membership, event_id) in candidates.items():
            if membership in ("invite", "knock"):
                if since is None or room_id in changed_membership or ignore_list_changed:
                    wanted[room_id] = event_id
            elif membership in ("leave", "ban") and room_id not in forgotten:
                if (since is None and room_filter.include_leave) or (since is not None and room_id in changed_membership):
                    wanted[room_id] = event_id
        loaded = await self.events.get_events(wanted.values())
        left: set[str] = set()
        for room_id, event_id in wanted.items():
            membership = allowed[room_id][0]
            event = loaded.get(event_id)
            if event is None:
                continue
            if membership in ("leave", "ban"):
                left.add(room_id)
                jobs.append(RoomJob(
                    room_id, since, event.internal["stream_ordering"], account_data.get(room_id, {}),
                    currently_joined=False, leave_event=event,
                ))
            elif not (membership == "invite" and event.sender in ignored):
                # Spec: invites from ignored users are not sent to the client.
                stripped = list(event.internal.get("invite_room_state" if membership == "invite"
                                                   else "knock_room_state", []))
                stripped.append(stripped_state_event(event))
                if membership == "invite":
                    invite[room_id] = {"invite_state": {"events": stripped}}
                else:
                    knock[room_id] = {"knock_state": {"events": stripped}}

        lazy = room_filter.lazy_load_members
        lazy_since = since.serialize() if since is not None and not request.full_state else None
        lazy_cache = self.room_builder.lazy.known(device, lazy_since) if lazy else None
        sent_members: dict[tuple[str, str], str] = {}
        response: dict[str, Any] = {
            "next_batch": now.serialize(),
            "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
            "account_data": {"events": []},
            "presence": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
        }
        global_data = account_data.get(GLOBAL, {})
        # Always in an initial sync (also before any change: clients need the defaults),
        # and computed afresh, so that new server-default rules show up.
        with_push_rules = since is None or PUSH_RULES_TYPE in global_data
        # The rooms, the encryption sections, presence and the push rules do not depend on each other.
        sections, encryption_news, presence, push_rules = await asyncio.gather(
            self.room_builder.build(
                device, request.filter, request.full_state, request.use_state_after, jobs, ignored, lazy_cache,
                sent_members, ahead),
            self._encryption_sections(request, now, response, member_reads),
            self.presence.for_sync(
                user_id, since.presence if since else None, now.presence, request.filter.presence,
                (since.events, now.events) if since else None, members_moved=bool(member_reads.changes)),
            self.push_rules.account_data_content(user_id) if with_push_rules else _nothing(None),
        )
        for room_id, section in sections.items():
            if room_id in left:
                section.pop("unread_notifications", None)
                section.pop("ephemeral", None)
                section.pop("summary", None)
                leave[room_id] = section
            else:
                join[room_id] = section

        if with_push_rules:
            global_data[PUSH_RULES_TYPE] = push_rules
        account_events = [
            {"type": t, "content": c} for t, c in global_data.items()
            if request.filter.account_data.allows_type(t)
        ]
        response["account_data"]["events"] = account_events
        response["presence"]["events"] = presence
        has_news = bool(join or invite or leave or knock or account_events or presence) or encryption_news
        if lazy:
            # The last call's response is the one returned (sync() above), so the device's
            # next since token is this next_batch.
            self.room_builder.lazy.remember(device, lazy_since, response["next_batch"], sent_members)
        return response, has_news

    async def _encryption_sections(
        self, request: SyncRequest, now: SyncToken, response: dict[str, Any], memberships: Memberships,
    ) -> bool:
        """Fill to_device, device_lists and the key counts; True if there are messages or changes."""
        user_id, device_id = request.requester.user_id, request.requester.device_id
        since = request.since
        # Independent reads, side by side (the key counts came with the memberships).
        (messages, position), changes = await asyncio.gather(
            self.to_device.for_sync(user_id, device_id, since.to_device if since else 0, now.to_device),
            self.e2e_keys.device_list_changes(
                user_id, since.events, now.events, since.device_lists, now.device_lists, list(memberships.rooms),
                memberships.members_changed()) if since is not None else _nothing(None),
        )
        response["to_device"]["events"] = messages
        if position != now.to_device:
            # More messages than one response carries: the next sync continues from here.
            response["next_batch"] = dataclasses.replace(now, to_device=position).serialize()
        news = bool(messages)
        if changes is not None:
            response["device_lists"] = {"changed": changes.changed, "left": changes.left}
            news |= bool(changes.changed or changes.left)
        response["device_one_time_keys_count"] = self.e2e_keys.reported_key_counts(memberships.one_time_keys)
        response["device_unused_fallback_key_types"] = memberships.fallback_key_types
        return news


async def _nothing(value: Any) -> Any:
    """A read skipped because its stream did not move: its empty answer, awaitable like the rest."""
    return value
