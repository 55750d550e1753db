"""GET /sync: initial and incremental, with long polling.

An incremental sync reads only rows after its token (DESIGN.md); rooms with
nothing new since the token are skipped without a query, thanks to the
stream change cache.
Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from homeserver.protocol.client_format import stripped_state_event
from homeserver.protocol.events import Event, StateKey
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
from homeserver.services.to_device import ToDeviceService
from homeserver.services.tokens import SyncToken, pagination_token
from homeserver.services.typing import TypingService
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.events import EventFilterSql, EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamChangeCache, StreamIdGenerator

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 1000
# How many rooms are computed at once; bounded by the database pool.
ROOM_CONCURRENCY = 8
MAX_HEROES = 5


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
    ):
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
            # A token ahead of our streams (e.g. given out before a database restore) would
            # hide every new event until the streams caught up with it: read it as "now".
            request = dataclasses.replace(request, since=request.since.capped_at(self.current_token()))
        while True:
            wake = self.notifier.token_for(user_id)
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
        memberships = await self.state.get_rooms_for_user(user_id)
        forgotten = await self.rooms.forgotten_rooms(user_id)

        changed_membership: dict[str, int] = {}
        if since is not None:
            for room_id, _event_id, position in await self.events.membership_changes(user_id, since.events, now.events):
                changed_membership[room_id] = position

        account_data: dict[str, dict[str, dict[str, Any]]] = await self.account_data.changed_since(
            user_id, since.account_data if since else 0, now.account_data
        )
        ignored = await self.ignored_users.ignored_by(user_id)
        # A changed ignore list may have hidden invites now to be shown: they are all sent again.
        ignore_list_changed = IGNORED_USER_LIST in account_data.get(GLOBAL, {})
        joined = [r for r, (m, _) in memberships.items() if m == "join" and room_filter.allows_room(r)]
        receipts = await self.receipts.for_sync(user_id, joined, since.receipts if since else 0, now.receipts)
        typing = self.typing.for_sync(joined, since.typing if since else None)

        semaphore = asyncio.Semaphore(ROOM_CONCURRENCY)
        join: dict[str, Any] = {}
        invite: dict[str, Any] = {}
        leave: dict[str, Any] = {}
        knock: dict[str, Any] = {}

        async def one_room(room_id: str, membership: str, event_id: str) -> None:
            async with semaphore:
                if membership == "join":
                    newly = since is not None and room_id in changed_membership and not await self._was_joined_at(
                        room_id, user_id, since.events)
                    if since is None or request.full_state or newly or self.room_changes.maybe_changed_since(
                            room_id, since.events) or room_id in account_data or room_id in receipts or (
                            room_id in typing):
                        if newly:
                            # The room is new to the client: all its receipts, and typing if any.
                            receipts.update(await self.receipts.for_sync(user_id, [room_id], 0, now.receipts))
                            typing.update(self.typing.for_sync([room_id], None))
                        ephemeral = ([typing[room_id]] if room_id in typing else []) + receipts.get(room_id, [])
                        section = await self._room_section(
                            request, room_id, since if not newly else None, now.events, None,
                            account_data.get(room_id, {}), currently_joined=True, ephemeral=ephemeral,
                            ignored=ignored,
                        )
                        if section is not None:
                            join[room_id] = section
                elif membership in ("invite", "knock"):
                    if since is None or room_id in changed_membership or ignore_list_changed:
                        event = await self.events.get_event(event_id)
                        # Spec: invites from ignored users are not sent to the client.
                        if event is not None and not (membership == "invite" and event.sender in ignored):
                            stripped = list(event.internal.get("invite_room_state" if membership == "invite"
                                                               else "knock_room_state", []))
                            stripped.append(stripped_state_event(event))
                            if membership == "invite":
                                invite[room_id] = {"invite_state": {"events": stripped}}
                            else:
                                knock[room_id] = {"knock_state": {"events": stripped}}
                elif membership in ("leave", "ban"):
                    if room_id in forgotten:
                        return
                    if since is None and not room_filter.include_leave:
                        return
                    if since is not None and room_id not in changed_membership:
                        return
                    event = await self.events.get_event(event_id)
                    if event is None:
                        return
                    section = await self._room_section(
                        request, room_id, since, event.internal["stream_ordering"], event,
                        account_data.get(room_id, {}), currently_joined=False, ignored=ignored,
                    )
                    if section is not None:
                        section.pop("unread_notifications", None)
                        section.pop("ephemeral", None)
                        section.pop("summary", None)
                        leave[room_id] = section

        await asyncio.gather(*(
            one_room(room_id, membership, event_id)
            for room_id, (membership, event_id) in memberships.items()
            if room_filter.allows_room(room_id)
        ))

        global_data = account_data.get(GLOBAL, {})
        if since is None or PUSH_RULES_TYPE in global_data:
            # Always in an initial sync (also before any change: clients need the defaults),
            # and computed afresh, so that new server-default rules show up.
            global_data[PUSH_RULES_TYPE] = await self.push_rules.account_data_content(user_id)
        account_events = [
            {"type": t, "content": c} for t, c in global_data.items()
            if request.filter.account_data.allows_type(t)
        ]
        response: dict[str, Any] = {
            "next_batch": now.serialize(),
            "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
            "account_data": {"events": account_events},
            "presence": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
        }
        has_news = bool(join or invite or leave or knock or account_events)
        has_news |= await self._encryption_sections(request, now, response)
        presence = await self.presence.for_sync(
            user_id, since.presence if since else None, now.presence, request.filter.presence,
            (since.events, now.events) if since else None)
        response["presence"]["events"] = presence
        has_news |= bool(presence)
        return response, has_news

    async def _encryption_sections(self, request: SyncRequest, now: SyncToken, response: dict[str, Any]) -> bool:
        """Fill to_device, device_lists and the key counts; True if there are messages or changes."""
        user_id, device_id = request.requester.user_id, request.requester.device_id
        since = request.since
        news = False
        messages, position = await self.to_device.for_sync(
            user_id, device_id, since.to_device if since else 0, now.to_device)
        response["to_device"]["events"] = messages
        if position != now.to_device:
            # More messages than one response carries: the next sync continues from here.
            response["next_batch"] = dataclasses.replace(now, to_device=position).serialize()
        news |= bool(messages)
        if since is not None:
            changes = await self.e2e_keys.device_list_changes(
                user_id, since.events, now.events, since.device_lists, now.device_lists)
            response["device_lists"] = {"changed": changes.changed, "left": changes.left}
            news |= bool(changes.changed or changes.left)
        response["device_one_time_keys_count"] = await self.e2e_keys.one_time_key_counts(user_id, device_id)
        response["device_unused_fallback_key_types"] = await self.e2e_keys.unused_fallback_key_types(
            user_id, device_id)
        return news

    async def _room_section(
        self, request: SyncRequest, room_id: str, since: SyncToken | None, up_to: int,
        leave_event: Event | None, room_account_data: dict[str, dict[str, Any]], currently_joined: bool,
        ephemeral: list[dict[str, Any]] = (), ignored: frozenset[str] = frozenset(),
    ) -> dict[str, Any] | None:
        user_id = request.requester.user_id
        room_filter = request.filter.room
        timeline_filter = room_filter.timeline
        limit = min(timeline_filter.limit or DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT)
        lower = since.events if since is not None else 0
        sql_filter = EventFilterSql(
            types=timeline_filter.types, not_types=timeline_filter.not_types,
            senders=timeline_filter.senders, not_senders=timeline_filter.not_senders,
            ignored_senders=tuple(ignored),
        )
        ids = await self.events.room_event_ids(room_id, lower, up_to, limit + 1, True, sql_filter)
        limited = len(ids) > limit
        ids = list(reversed(ids[:limit]))
        loaded = await self.events.get_events(ids)
        timeline = [loaded[i] for i in ids if i in loaded]
        visible = {e.event_id for e in await self.views.visible_to(user_id, timeline, currently_joined)}
        if leave_event is not None:
            # The user always learns how they left, whatever the history visibility.
            visible.add(leave_event.event_id)
        timeline = [e for e in timeline if e.event_id in visible]
        timeline = [e for e in timeline if timeline_filter.allows(e)]

        account_events = [
            {"type": t, "content": c} for t, c in room_account_data.items()
            if room_filter.account_data.allows_type(t)
        ]
        ephemeral = [
            e for e in ephemeral if room_filter.ephemeral.allows_type(e["type"])
            and room_filter.ephemeral.allows_room(room_id)
        ]
        prev_batch = pagination_token(timeline[0].internal["stream_ordering"] - 1 if timeline else up_to)
        state_events = await self._state_events(request, room_id, since, up_to, timeline)
        if (since is not None and not timeline and not state_events and not account_events and not ephemeral
                and not request.full_state and leave_event is None):
            return None

        for_device = (user_id, request.requester.device_id)
        section: dict[str, Any] = {
            "timeline": {
                # Spec: aggregations are bundled when the timeline is limited; otherwise the
                # client holds every child event and aggregates them itself.
                "events": await self.views.serialize(
                    timeline, for_device, include_room_id=False, bundle_aggregations=limited
                ),
                "limited": limited,
                "prev_batch": prev_batch,
            },
            "state_after" if request.use_state_after else "state": {
                "events": await self.views.serialize(state_events, include_room_id=False),
            },
            "account_data": {"events": account_events},
            "ephemeral": {"events": ephemeral},
            "unread_notifications": {"notification_count": 0, "highlight_count": 0},
        }
        if currently_joined:
            counts = await self.notifications.unread_counts(user_id, room_id, up_to)
            if timeline_filter.unread_thread_notifications:
                # Spec: then unread_notifications counts the main timeline only, and each
                # thread with unread notifications has its counts under its root's id.
                section["unread_notifications"] = counts.main
                section["unread_thread_notifications"] = counts.threads
            else:
                section["unread_notifications"] = counts.total()
        if since is None or any(e.type == "m.room.member" for e in timeline + state_events):
            section["summary"] = await self._summary(room_id, user_id)
        return section

    async def _state_events(
        self, request: SyncRequest, room_id: str, since: SyncToken | None, up_to: int, timeline: list[Event],
    ) -> list[Event]:
        """The room's state up to the start of the timeline (``state``), or with
        use_state_after up to its end (``state_after``): all of it, or what changed since
        ``since``."""
        user_id = request.requester.user_id
        room_filter = request.filter.room
        if timeline and not request.use_state_after:
            target_group = timeline[0].internal.get("state_group_before")
        else:
            # The end of the window rather than the last event shown: state events a
            # timeline filter left out still reach the client.
            found = await self.events.last_event_at(room_id, up_to)
            target_group = found[1] if found else None
        target = await self.state.get_state(target_group)
        lazy_members = room_filter.state.lazy_load_members or room_filter.timeline.lazy_load_members
        senders = {e.sender for e in timeline}
        if since is None or request.full_state:
            state_ids: dict[StateKey, str] = dict(target)
            if lazy_members:
                # Lazy loading: only the timeline's senders and the user themself.
                state_ids = {
                    k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders | {user_id}
                }
        else:
            found = await self.events.last_event_at(room_id, since.events)
            state_at_since = await self.state.get_state(found[1] if found else None)
            state_ids = {k: v for k, v in target.items() if state_at_since.get(k) != v}
            if lazy_members:
                # The delta keeps every membership change in the gap (the spec's MUST), and
                # each sender's membership is added: we do not track which members a device
                # already has, and redundant members are allowed.
                for sender in senders:
                    key = ("m.room.member", sender)
                    if key in target:
                        state_ids.setdefault(key, target[key])
        # `state` never repeats the timeline; `state_after` is complete on its own, as
        # clients then ignore the state events of the timeline.
        excluded = set() if request.use_state_after else {e.event_id for e in timeline}
        loaded = await self.events.get_events(v for v in state_ids.values() if v not in excluded)
        events = [e for e in loaded.values() if room_filter.state.allows(e)]
        events.sort(key=lambda e: e.internal["stream_ordering"])
        return events

    async def _summary(self, room_id: str, user_id: str) -> dict[str, Any]:
        members = await self.state.get_members(room_id)
        joined = sum(1 for m in members.values() if m == "join")
        invited = sum(1 for m in members.values() if m == "invite")
        # Spec: the first 5 joined or invited members by stream order, never the user;
        # the members who left or were banned only when there is no one else.
        candidates = await self.state.get_member_ids_in_stream_order(room_id, user_id, MAX_HEROES)
        present = [u for u, m in candidates if m in ("join", "invite")]
        heroes = present or [u for u, m in candidates if m in ("leave", "ban")]
        return {
            "m.heroes": heroes,
            "m.joined_member_count": joined,
            "m.invited_member_count": invited,
        }

    async def _was_joined_at(self, room_id: str, user_id: str, position: int) -> bool:
        found = await self.events.last_event_at(room_id, position)
        if found is None:
            return False
        state = await self.state.get_state(found[1])
        member_id = state.get(("m.room.member", user_id))
        if member_id is None:
            return False
        event = await self.events.get_event(member_id)
        return event is not None and event.membership == "join"
