"""One room of a simplified sliding sync response (MSC4186): timeline, required_state, summary.

Only the rooms of a request's window come here, all of them together: each read
is made for the whole window at once, so a request costs the same queries for a
window of 3 rooms as of 20, and never reads every room of the user.
Spec: https://github.com/matrix-org/matrix-spec-proposals/pull/4186
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Awaitable, Callable, Iterable, Mapping, TypeVar

from homeserver.protocol.client_format import stripped_state_event
from homeserver.protocol.events import Event, StateKey
from homeserver.services.event_views import EventViews
from homeserver.services.notifications import NotificationCounter, UnreadCounts
from homeserver.services.sync_rooms import guessed
from homeserver.services.tokens import SyncToken, pagination_token
from homeserver.storage.events import EventFilterSql, EventStore
from homeserver.storage.push_actions import UnreadInputs
from homeserver.storage.sliding_sync import UserRoom
from homeserver.storage.state import StateStore
from homeserver.storage.sync_queries import SyncQueries

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
        if other is self or other == self:
            return self
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

    def at(self, token: SyncToken) -> "SentRoom":
        """The same, as sent at ``token`` (a room of the window with nothing new). Made
        directly: dataclasses.replace costs three times as much, for each room of the
        window at every response."""
        return SentRoom(token, self.membership, self.required_state, self.state, self.name, self.avatar,
                        self.heroes, self.counts)


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


@dataclasses.dataclass(frozen=True)
class RoomJob:
    """A room of the window to build: its row, what the client asks, what was sent of it."""

    room: UserRoom
    bump_stamp: int
    config: RoomConfig
    sent: SentRoom | None


K = TypeVar("K")
V = TypeVar("V")

# A timeline read: (room id, after, up to, limit), as EventStore.room_event_ids_many takes it.
TimelineWindow = tuple[str, int, int, int]


@dataclasses.dataclass(frozen=True)
class ReadsAhead:
    """Reads of build_many started before the rooms to build were known (RoomBuilder.read_ahead)."""

    # -> (the ignored users read with, {window: its event ids, newest first}), None if it failed.
    timelines: asyncio.Future[tuple[tuple[str, ...], dict[TimelineWindow, list[str]]] | None]
    # -> the unread inputs of the rooms at ``up_to``, None if it failed.
    inputs: asyncio.Future[dict[str, UnreadInputs] | None]
    up_to: int


async def known_or_read(
    wanted: Iterable[K], early: Mapping[K, V] | None, read: Callable[[list[K]], Awaitable[Mapping[K, V]]],
) -> dict[K, V]:
    """What a read ahead (``early``, None if it failed) found of the keys wanted, and
    ``read`` of the others, only if there are any."""
    early = early or {}
    wanted = list(wanted)
    out = {k: early[k] for k in wanted if k in early}
    missing = [k for k in wanted if k not in early]
    if missing:
        out.update(await read(missing))
    return out


@dataclasses.dataclass
class _Room:
    """A room being built, filled step by step (each step reads for every room at once)."""

    job: RoomJob
    initial: bool
    joined: bool
    up_to: int
    lower: int
    limit: int
    limited: bool = False
    timeline: list[Event] = dataclasses.field(default_factory=list)
    state_ids: dict[StateKey, str] = dataclasses.field(default_factory=dict)
    memberships: dict[str, str] = dataclasses.field(default_factory=dict)
    delta: dict[StateKey, str] = dataclasses.field(default_factory=dict)
    heroes: list[str] = dataclasses.field(default_factory=list)

    @property
    def room_id(self) -> str:
        return self.job.room.room_id


class RoomBuilder:
    def __init__(self, events: EventStore, state: StateStore, views: EventViews, notifications: NotificationCounter,
                 queries: SyncQueries):
        self.events = events
        self.state = state
        self.views = views
        self.notifications = notifications
        self.queries = queries

    async def build_many(
        self, user_id: str, device_id: str, jobs: list[RoomJob], since: SyncToken | None, now: SyncToken,
        ignored: frozenset[str], current: dict[str, dict[StateKey, tuple[str, str | None]]],
        ahead: ReadsAhead | None = None,
    ) -> dict[str, tuple[dict[str, Any] | None, SentRoom]]:
        """Each room's section (None when a room already sent has nothing new) and what is
        then sent. ``current`` is each room's current state with memberships. Every read is
        made for all the rooms together, as /sync v3 does (sync_rooms.py): a window of 20
        rooms costs the queries of one. What ``ahead`` read of the same rooms and windows
        is not read again."""
        out: dict[str, tuple[dict[str, Any] | None, SentRoom]] = {}
        rooms: list[_Room] = []
        invites: list[RoomJob] = []
        for job in jobs:
            room = job.room
            if room.membership in ("invite", "knock"):
                invites.append(job)
                continue
            initial = _is_initial(job.sent, room.membership)
            joined = room.membership == "join"
            rooms.append(_Room(
                job, initial, joined,
                # A room the user left is shown as it was when they left.
                up_to=now.events if joined else min(now.events, room.membership_position),
                lower=0 if initial or job.sent is None else job.sent.token.events,
                limit=min(job.config.timeline_limit, MAX_TIMELINE_LIMIT)))
        # The membership events: the stripped state of invites, the state of rooms left.
        own = await self.events.get_events(
            [j.room.membership_event_id for j in invites]
            + [r.job.room.membership_event_id for r in rooms if not r.joined])
        for job in invites:
            out[job.room.room_id] = _invite(job, own.get(job.room.membership_event_id), now)
        if not rooms:
            return out

        # The joined rooms' unread counts (as /sync v3 reads them) beside the timelines.
        unread, _ = await asyncio.gather(
            self._unread_counts(user_id, {r.room_id: r.up_to for r in rooms if r.joined}, ahead),
            self._timelines(user_id, rooms, ignored, ahead))
        for room in rooms:
            room_current = current.get(room.room_id, {})
            room.memberships = {k[1]: m for k, (_, m) in room_current.items() if k[0] == "m.room.member" and m}
            if room.joined:
                room.state_ids = {k: v for k, (v, _) in room_current.items()}
            else:
                member = own.get(room.job.room.membership_event_id)
                room.state_ids = dict(await self.state.get_state(
                    member.internal.get("state_group_after") if member else None))
            config, sent = room.job.config, room.job.sent
            wanted = resolve_required_state(
                config.required_state, room.state_ids, user_id, {e.sender for e in room.timeline})
            # Entries the connection already holds are not sent again ($LAZY members included).
            room.delta = {k: v for k, v in wanted.items()
                          if room.initial or sent is None or sent.state.get(k) != v}
        # Heroes of the rooms without a name, from one summary query (/sync v3's).
        nameless = [r.room_id for r in rooms if ("m.room.name", "") not in r.state_ids]
        summaries = await self.queries.summaries(nameless, user_id, MAX_HEROES) if nameless else {}
        for room in rooms:
            summary = summaries.get(room.room_id)
            if summary is not None:
                present = [u for u, m in summary.candidates if m in ("join", "invite")]
                room.heroes = present or [u for u, m in summary.candidates if m in ("leave", "ban")]
        extra = await self.events.get_events([
            i for r in rooms for i in (
                r.state_ids.get(("m.room.name", "")), r.state_ids.get(("m.room.avatar", "")), *r.delta.values(),
                *(r.state_ids.get(("m.room.member", h)) for h in r.heroes)) if i])

        built: list[tuple[_Room, dict[str, Any], list[Event]]] = []
        for room in rooms:
            section, new_sent, state_events = self._section(room, extra, unread, since, now)
            out[room.room_id] = (section, new_sent)
            if section is not None:
                built.append((room, section, state_events))
        await self._serialize(built, (user_id, device_id))
        return out

    def _section(
        self, room: _Room, extra: dict[str, Event], unread: dict[str, UnreadCounts], since: SyncToken | None,
        now: SyncToken,
    ) -> tuple[dict[str, Any] | None, SentRoom, list[Event]]:
        """A room's section but its events (``_serialize``), what is then sent of it, and
        the state events it sends; no section when a room already sent has nothing new."""
        job, sent = room.job, room.job.sent
        name = _string(extra.get(room.state_ids.get(("m.room.name", ""), "")), "name")
        avatar = _string(extra.get(room.state_ids.get(("m.room.avatar", ""), "")), "url")
        counts = (0, 0)
        if room.joined:
            total = unread[room.room_id].total()
            counts = (total["notification_count"], total["highlight_count"])
        sent_state = dict(sent.state) if sent is not None and not room.initial else {}
        sent_state.update(room.delta)
        heroes = tuple(room.heroes)
        new_sent = SentRoom(
            now, job.room.membership, job.config.required_state, sent_state, name, avatar, heroes, counts)
        changed_summary = room.initial or sent is None or (name, avatar, heroes) != (
            sent.name, sent.avatar, sent.heroes)
        if (not room.initial and not room.timeline and not room.delta and not changed_summary
                and counts == sent.counts):
            return None, new_sent, []
        state_events = sorted((extra[i] for i in room.delta.values() if i in extra),
                              key=lambda e: e.internal["stream_ordering"])
        members = room.memberships
        timeline = room.timeline
        section: dict[str, Any] = {
            "prev_batch": pagination_token(timeline[0].internal["stream_ordering"] - 1 if timeline else room.up_to),
            "limited": room.limited,
            "num_live": sum(1 for e in timeline if since is not None and e.internal["stream_ordering"] > since.events),
            "bump_stamp": job.bump_stamp,
            "joined_count": sum(1 for m in members.values() if m == "join"),
            "invited_count": sum(1 for m in members.values() if m == "invite"),
            "notification_count": counts[0],
            "highlight_count": counts[1],
        }
        if room.initial:
            section["initial"] = True
        if changed_summary:
            if name is not None:
                section["name"] = name
            if avatar is not None:
                section["avatar"] = avatar
            if heroes:
                section["heroes"] = [
                    _hero(h, extra.get(room.state_ids.get(("m.room.member", h), ""))) for h in heroes]
        return section, new_sent, state_events

    async def _serialize(self, built: list[tuple[_Room, dict[str, Any], list[Event]]],
                         device: tuple[str, str]) -> None:
        """The sections' timelines and required_state in the client format, for all the rooms
        at once. As Synapse: without their room_id (the room's key says it). Aggregations are
        bundled in limited timelines only: otherwise the client holds every child event (as
        /sync v3)."""
        for bundle in (True, False):
            chosen = [(r, section) for r, section, _ in built if r.limited == bundle]
            serialized = await self.views.serialize_lists(
                [r.timeline for r, _ in chosen], device, include_room_id=False, bundle_aggregations=bundle)
            for (_, section), events in zip(chosen, serialized):
                section["timeline"] = events
        serialized = await self.views.serialize_lists(
            [state_events for _, _, state_events in built], include_room_id=False)
        for (_, section, _), events in zip(built, serialized):
            section["required_state"] = events

    def read_ahead(
        self, user_id: str, windows: list[TimelineWindow], up_to: int, ignored: Awaitable[frozenset[str]],
    ) -> ReadsAhead:
        """Start the timeline and unread count reads of ``build_many`` for rooms guessed to
        be built (joined ones, ``windows`` of timelines ending at ``up_to``), before the
        rooms are known: build_many takes what was guessed right and reads the rest."""

        async def timelines() -> tuple[tuple[str, ...], dict[TimelineWindow, list[str]]]:
            senders = tuple(await ignored)
            return senders, await self._timeline_ids(windows, senders)

        return ReadsAhead(guessed(timelines()),
                          guessed(self.notifications.read_inputs(user_id, {w[0]: up_to for w in windows})), up_to)

    async def _timeline_ids(self, windows: list[TimelineWindow], ignored: tuple[str, ...]
                            ) -> dict[TimelineWindow, list[str]]:
        """Each window's event ids, newest first."""
        ids = await self.events.room_event_ids_many(windows, EventFilterSql(ignored_senders=ignored))
        return {w: ids.get(w[0], []) for w in windows}

    async def _unread_counts(
        self, user_id: str, up_to: dict[str, int], ahead: ReadsAhead | None,
    ) -> dict[str, UnreadCounts]:
        early = None
        if ahead is not None:
            # Read at ahead.up_to: of use only for the rooms wanted up to there.
            early = {r: v for r, v in (await ahead.inputs or {}).items() if up_to.get(r) == ahead.up_to}
        inputs = await known_or_read(
            up_to, early, lambda rooms: self.notifications.read_inputs(user_id, {r: up_to[r] for r in rooms}))
        return await self.notifications.unread_counts_many(user_id, up_to, inputs)

    async def _timelines(
        self, user_id: str, rooms: list[_Room], ignored: frozenset[str], ahead: ReadsAhead | None,
    ) -> None:
        """Each room's timeline: its newest events up to its limit, those the user may see."""
        senders = tuple(ignored)
        early = await ahead.timelines if ahead is not None else None
        by_window = await known_or_read(
            [(r.room_id, r.lower, r.up_to, r.limit + 1) for r in rooms],
            early[1] if early is not None and early[0] == senders else None,
            lambda missing: self._timeline_ids(missing, senders))
        ids = {w[0]: v for w, v in by_window.items()}
        shown: list[list[str]] = []  # each room's, oldest first
        for room in rooms:
            newest_first = ids.get(room.room_id, [])
            room.limited = len(newest_first) > room.limit
            shown.append(list(reversed(newest_first[:room.limit])))
        loaded = await self.events.get_events([i for room_ids in shown for i in room_ids])
        visible = await self.views.visible_to_many(
            user_id, [([loaded[i] for i in room_ids if i in loaded], r.joined) for r, room_ids in zip(rooms, shown)])
        for room, timeline in zip(rooms, visible):
            room.timeline = timeline


def _invite(job: RoomJob, event: Event | None, now: SyncToken) -> tuple[dict[str, Any] | None, SentRoom]:
    # The room's state is not the invitee's to read: only the stripped state of the
    # invite (or knock) goes out, once per membership.
    room = job.room
    new_sent = SentRoom(now, room.membership, frozenset(), {}, None, None, ())
    if not _is_initial(job.sent, room.membership):
        return None, new_sent
    stripped: list[dict[str, Any]] = []
    if event is not None:
        key = "invite_room_state" if room.membership == "invite" else "knock_room_state"
        stripped = list(event.internal.get(key, []))
        stripped.append(stripped_state_event(event))
    section: dict[str, Any] = {
        # As Synapse: no timeline or required_state, only the stripped state.
        "initial": True, "invite_state": stripped, "bump_stamp": job.bump_stamp,
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
