"""One room of a simplified sliding sync response (MSC4186): timeline, required_state, summary.

Only the rooms of a request's window come here, so a request costs queries for
its window, never for every room of the user.
Spec: https://github.com/matrix-org/matrix-spec-proposals/pull/4186
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from homeserver.protocol.client_format import stripped_state_event
from homeserver.protocol.events import Event, StateKey
from homeserver.services.event_views import EventViews
from homeserver.services.notifications import NotificationCounter, UnreadCounts
from homeserver.services.tokens import SyncToken, pagination_token
from homeserver.storage.events import EventFilterSql, EventStore
from homeserver.storage.sliding_sync import UserRoom
from homeserver.storage.state import StateStore

MAX_TIMELINE_LIMIT = 1000
MAX_HEROES = 5
WILDCARD = "*"
LAZY = "$LAZY"
ME = "$ME"


@dataclasses.dataclass(frozen=True)
class RoomConfig:
    """What the client asks of a room; a room in several lists and subscriptions gets the union."""

    required_state: frozenset[tuple[str, str]] = frozenset()
    timeline_limit: int = 0

    def merged(self, other: "RoomConfig") -> "RoomConfig":
        return RoomConfig(self.required_state | other.required_state, max(self.timeline_limit, other.timeline_limit))


@dataclasses.dataclass(frozen=True)
class SentRoom:
    """What a connection has sent of a room, so that later responses carry only changes."""

    token: SyncToken
    membership: str
    required_state: frozenset[tuple[str, str]]
    state: dict[StateKey, str]
    name: str | None
    avatar: str | None
    heroes: tuple[str, ...]
    # (notification_count, highlight_count): a read on another device changes them.
    counts: tuple[int, int] = (0, 0)


def resolve_required_state(
    required: Iterable[tuple[str, str]], state_ids: dict[StateKey, str], user_id: str, senders: set[str],
) -> dict[StateKey, str]:
    """The entries of ``state_ids`` that a required_state list names, with MSC4186's
    ``*`` (any type or state key), ``$LAZY`` (the members who sent the timeline) and
    ``$ME`` (the user) placeholders."""
    required = list(required)
    if (WILDCARD, WILDCARD) in required:
        return dict(state_ids)
    wanted: dict[StateKey, str] = {}

    def add(key: StateKey) -> None:
        if key in state_ids:
            wanted[key] = state_ids[key]

    for event_type, state_key in required:
        key = user_id if state_key == ME else state_key
        if event_type == WILDCARD:
            for k in state_ids:
                if k[1] == key:
                    add(k)
        elif state_key == WILDCARD:
            for k in state_ids:
                if k[0] == event_type:
                    add(k)
        elif state_key == LAZY:
            if event_type == "m.room.member":
                for sender in senders:
                    add(("m.room.member", sender))
        else:
            add((event_type, key))
    return wanted


class RoomBuilder:
    def __init__(self, events: EventStore, state: StateStore, views: EventViews, notifications: NotificationCounter):
        self.events = events
        self.state = state
        self.views = views
        self.notifications = notifications

    async def build(
        self, user_id: str, device_id: str, room: UserRoom, bump_stamp: int, config: RoomConfig,
        sent: SentRoom | None, since: SyncToken | None, now: SyncToken, ignored: frozenset[str],
        current: dict[StateKey, tuple[str, str | None]] | None = None, unread: UnreadCounts | None = None,
    ) -> tuple[dict[str, Any] | None, SentRoom]:
        """The room's section (None when a room already sent has nothing new) and what is then sent.

        ``current`` is the room's current state with memberships, and ``unread`` its unread
        counts (if joined), read for the whole window at once."""
        initial = _is_initial(sent, room.membership)
        if room.membership in ("invite", "knock"):
            return await self._invite(room, bump_stamp, initial, sent, now)
        joined = room.membership == "join"
        # A room the user left is shown as it was when they left.
        up_to = now.events if joined else min(now.events, room.membership_position)
        lower = 0 if initial or sent is None else sent.token.events
        limit = min(config.timeline_limit, MAX_TIMELINE_LIMIT)
        sql_filter = EventFilterSql(ignored_senders=tuple(ignored))
        ids = await self.events.room_event_ids(room.room_id, lower, up_to, limit + 1, True, sql_filter)
        limited = len(ids) > limit
        ids = list(reversed(ids[:limit]))
        loaded = await self.events.get_events(ids)
        timeline = [loaded[i] for i in ids if i in loaded]
        timeline = await self.views.visible_to(user_id, timeline, joined)

        if current is None:
            current = {k: (v, None) for k, v in (await self.state.get_current_state_ids(room.room_id)).items()}
            memberships = await self.state.get_members(room.room_id)
        else:
            memberships = {k[1]: m for k, (_, m) in current.items() if k[0] == "m.room.member" and m}
        if joined:
            state_ids = {k: v for k, (v, _) in current.items()}
        else:
            member = await self.events.get_event(room.membership_event_id)
            state_ids = await self.state.get_state(member.internal.get("state_group_after") if member else None)
        senders = {e.sender for e in timeline}
        wanted = resolve_required_state(config.required_state, state_ids, user_id, senders)
        # Entries the connection already holds are not sent again ($LAZY members included).
        delta = {k: v for k, v in wanted.items() if initial or sent is None or sent.state.get(k) != v}

        name_id = state_ids.get(("m.room.name", ""))
        avatar_id = state_ids.get(("m.room.avatar", ""))
        heroes: list[str] = []
        if name_id is None:
            candidates = await self.state.get_member_ids_in_stream_order(room.room_id, user_id, MAX_HEROES)
            present = [u for u, m in candidates if m in ("join", "invite")]
            heroes = present or [u for u, m in candidates if m in ("leave", "ban")]
        hero_ids = [state_ids[("m.room.member", h)] for h in heroes if ("m.room.member", h) in state_ids]
        extra = await self.events.get_events([i for i in (name_id, avatar_id, *delta.values(), *hero_ids) if i])
        name = _string(extra.get(name_id) if name_id else None, "name")
        avatar = _string(extra.get(avatar_id) if avatar_id else None, "url")

        counts = (0, 0)
        if joined:
            if unread is None:
                unread = await self.notifications.unread_counts(user_id, room.room_id, up_to)
            total = unread.total()
            counts = (total["notification_count"], total["highlight_count"])
        sent_state = dict(sent.state) if sent is not None and not initial else {}
        sent_state.update(delta)
        new_sent = SentRoom(
            now, room.membership, config.required_state, sent_state, name, avatar, tuple(heroes), counts)
        changed_summary = initial or sent is None or (name, avatar, tuple(heroes)) != (sent.name, sent.avatar, sent.heroes)
        if not initial and not timeline and not delta and not changed_summary and counts == sent.counts:
            return None, new_sent

        state_events = [extra[i] for i in delta.values() if i in extra]
        state_events.sort(key=lambda e: e.internal["stream_ordering"])
        members = memberships
        section: dict[str, Any] = {
            # As Synapse: events without their room_id (the room's key says it).
            "required_state": await self.views.serialize(state_events, include_room_id=False),
            "timeline": await self.views.serialize(
                timeline, (user_id, device_id), include_room_id=False, bundle_aggregations=limited),
            "prev_batch": pagination_token(timeline[0].internal["stream_ordering"] - 1 if timeline else up_to),
            "limited": limited,
            "num_live": sum(1 for e in timeline if since is not None and e.internal["stream_ordering"] > since.events),
            "bump_stamp": bump_stamp,
            "joined_count": sum(1 for m in members.values() if m == "join"),
            "invited_count": sum(1 for m in members.values() if m == "invite"),
            "notification_count": counts[0],
            "highlight_count": counts[1],
        }
        if initial:
            section["initial"] = True
        if changed_summary:
            if name is not None:
                section["name"] = name
            if avatar is not None:
                section["avatar"] = avatar
            if heroes:
                section["heroes"] = [_hero(h, extra.get(state_ids.get(("m.room.member", h), ""))) for h in heroes]
        return section, new_sent

    async def _invite(
        self, room: UserRoom, bump_stamp: int, initial: bool, sent: SentRoom | None, now: SyncToken,
    ) -> tuple[dict[str, Any] | None, SentRoom]:
        # The room's state is not the invitee's to read: only the stripped state of the
        # invite (or knock) goes out, once per membership.
        new_sent = SentRoom(now, room.membership, frozenset(), {}, None, None, ())
        if not initial:
            return None, new_sent
        event = await self.events.get_event(room.membership_event_id)
        stripped: list[dict[str, Any]] = []
        if event is not None:
            key = "invite_room_state" if room.membership == "invite" else "knock_room_state"
            stripped = list(event.internal.get(key, []))
            stripped.append(stripped_state_event(event))
        section: dict[str, Any] = {
            # As Synapse: no timeline or required_state, only the stripped state.
            "initial": True, "invite_state": stripped, "bump_stamp": bump_stamp,
            "notification_count": 0, "highlight_count": 0,
        }
        for item in stripped:
            content = item.get("content") if isinstance(item, dict) else None
            if not isinstance(content, dict):
                continue
            if item.get("type") == "m.room.name" and isinstance(content.get("name"), str):
                section["name"] = content["name"]
            if item.get("type") == "m.room.avatar" and isinstance(content.get("url"), str):
                section["avatar"] = content["url"]
        return section, new_sent


def _is_initial(sent: SentRoom | None, membership: str) -> bool:
    """Whether the room goes out as new: never sent, or sent as an invite or knock (no
    timeline nor state then) and now joined or left, or the other way round."""
    if sent is None:
        return True
    stripped = ("invite", "knock")
    return sent.membership != membership and (sent.membership in stripped or membership in stripped)


def _string(event: Event | None, field: str) -> str | None:
    if event is None:
        return None
    value = event.content.get(field)
    return value if isinstance(value, str) and value else None


def _hero(user_id: str, member: Event | None) -> dict[str, Any]:
    hero: dict[str, Any] = {"user_id": user_id}
    if member is not None:
        if isinstance(member.content.get("displayname"), str):
            hero["displayname"] = member.content["displayname"]
        if isinstance(member.content.get("avatar_url"), str):
            hero["avatar_url"] = member.content["avatar_url"]
    return hero
