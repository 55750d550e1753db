"""The joined and left rooms of a /sync response, all built together.

Each step reads what it needs for every room of the response in one query
(timelines, events, state groups, visibility, state events, summaries, unread
counts, bundled aggregations), so that the number of queries of a /sync does
not grow with the number of rooms (issue 7).
Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Awaitable, Sequence, TypeVar

from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.filters import SyncFilter
from homeserver.services.event_views import EventViews
from homeserver.services.notifications import NotificationCounter
from homeserver.services.tokens import SyncToken, pagination_token
from homeserver.storage.cache import LruCache
from homeserver.storage.events import EventFilterSql, EventStore
from homeserver.storage.state import StateStore
from homeserver.storage.sync_queries import RoomReads, RoomWindow, SyncQueries, UnreadRequest

T = TypeVar("T")

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 1000
MAX_HEROES = 5
MEMBER = "m.room.member"

Device = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class RoomJob:
    """One room to build: its events in (since, up_to], or all of it when since is None."""

    room_id: str
    since: SyncToken | None
    up_to: int
    account_data: dict[str, dict[str, Any]]
    currently_joined: bool
    leave_event: Event | None = None
    ephemeral: Sequence[dict[str, Any]] = ()


class LazyMembers:
    """The members each device was sent with lazy loading, as Synapse's LAZY_LOAD_MEMBERS
    cache: an incremental sync sends a timeline sender's membership only if the device
    does not have it yet. Bounded (an LRU of devices, each an LRU of (room, member)); a
    member forgotten is merely sent again, which the spec allows.

    The entries of a device are trusted only for a sync whose since token is a
    next_batch this process gave that device since it last sent members: a retried
    request (its response lost), or a device whose previous sync went to another
    process, starts afresh.
    """

    # Tokens given out without new members (long-poll rounds with nothing new) that
    # still vouch for the entries.
    MAX_TOKENS = 16

    def __init__(self, devices: int = 1000, members_per_device: int = 2000):
        self._devices: LruCache[Device, tuple[tuple[str, ...], LruCache[tuple[str, str], str]]] = LruCache(devices)
        self._per_device = members_per_device

    def known(self, device: Device, since: str | None) -> LruCache[tuple[str, str], str] | None:
        """The device's entries if ``since`` continues its lazy syncs here, else None."""
        found = self._devices.get(device)
        if found is None or since is None or since not in found[0]:
            return None
        return found[1]

    def remember(self, device: Device, since: str | None, next_batch: str,
                 sent: dict[tuple[str, str], str]) -> None:
        found = self._devices.get(device)
        if found is not None and since is not None and since in found[0]:
            tokens, entries = found
        else:
            tokens, entries = (), LruCache(self._per_device)
        if sent:
            for key, event_id in sent.items():
                entries.set(key, event_id)
            # Only a sync from this response on knows these members.
            tokens = (next_batch,)
        else:
            tokens = (tokens + (next_batch,))[-self.MAX_TOKENS:]
        self._devices.set(device, (tokens, entries))


def guessed(read: Awaitable[T]) -> asyncio.Future[T | None]:
    """``read`` started now, for a caller that reads ahead on a guess: its result, or None
    if it failed (the caller then reads again what it needs, and that read tells of the
    failure)."""

    async def run() -> T | None:
        try:
            return await read
        except Exception:
            return None
    return asyncio.ensure_future(run())


@dataclasses.dataclass(frozen=True)
class _ReadAheadResult:
    windows: dict[str, RoomWindow]
    limit: int
    sql_filter: EventFilterSql
    request: UnreadRequest
    reads: RoomReads


@dataclasses.dataclass(frozen=True)
class ReadAhead:
    """Room reads started before the rooms of a /sync were known (SyncRooms.read_ahead)."""

    task: asyncio.Future[_ReadAheadResult | None]


def _timeline_read(sync_filter: SyncFilter, ignored: frozenset[str]) -> tuple[int, EventFilterSql]:
    """The timeline limit and the filter a /sync reads its timelines with."""
    timeline_filter = sync_filter.room.timeline
    return min(timeline_filter.limit or DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT), EventFilterSql(
        types=timeline_filter.types, not_types=timeline_filter.not_types,
        senders=timeline_filter.senders, not_senders=timeline_filter.not_senders,
        ignored_senders=tuple(ignored),
    )


@dataclasses.dataclass
class _Room:
    job: RoomJob
    timeline: list[Event]
    limited: bool
    state: list[Event] = dataclasses.field(default_factory=list)
    account_events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ephemeral: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class SyncRooms:
    def __init__(self, events: EventStore, state: StateStore, views: EventViews,
                 notifications: NotificationCounter, queries: SyncQueries, lazy: LazyMembers | None = None):
        self.events = events
        self.state = state
        self.views = views
        self.notifications = notifications
        self.queries = queries
        self.lazy = lazy or LazyMembers()

    async def was_joined_at(self, user_id: str, room_ids: Sequence[str], position: int) -> set[str]:
        """The rooms among these the user was joined to at a stream position."""
        groups = await self.queries.state_groups_at([(r, position) for r in room_ids])
        states = await self.state.get_states(groups.values())
        member_ids = {
            r: states[g].get((MEMBER, user_id)) for (r, _), g in groups.items() if g is not None
        }
        loaded = await self.events.get_events(i for i in member_ids.values() if i)
        return {r for r, i in member_ids.items() if i in loaded and loaded[i].membership == "join"}

    async def build(
        self, device: Device, sync_filter: SyncFilter, full_state: bool, use_state_after: bool,
        jobs: Sequence[RoomJob], ignored: frozenset[str], lazy_cache: LruCache[tuple[str, str], str] | None,
        sent_members: dict[tuple[str, str], str], ahead: ReadAhead | None = None,
    ) -> dict[str, dict[str, Any]]:
        """room id -> its section, for the rooms that have something to send.

        ``lazy_cache`` holds the members the device already has (lazy loading of an
        incremental sync); the members sent now are added to ``sent_members``. What
        ``ahead`` read of these rooms (``read_ahead``) is not read again."""
        if not jobs:
            return {}
        user_id = device[0]
        room_filter = sync_filter.room
        timeline_filter = room_filter.timeline
        limit, sql_filter = _timeline_read(sync_filter, ignored)
        # With the timelines, in one statement: the state groups the state sections start
        # from (_state_events), at the end of each window (for a room without a timeline, or
        # with use_state_after) and at each since token; and what the unread counts of the
        # joined rooms need (those sent, below).
        reads = await self._room_reads(
            [RoomWindow(j.room_id, j.since.events if j.since else 0, j.up_to,
                        state_at_after=j.since is not None and not full_state) for j in jobs],
            limit + 1, sql_filter,
            await self.notifications.unread_request(user_id, {j.room_id: j.up_to for j in jobs if j.currently_joined}),
            ahead)
        ids, at = reads.timelines, reads.state_groups
        loaded, _ = await asyncio.gather(
            self.events.get_events(i for room_ids in ids.values() for i in room_ids[:limit]),
            self._prefetch_state(user_id, sync_filter, full_state, use_state_after, jobs, reads, limit))
        # The state at a window's end is that after its newest event when the timeline has
        # it (room_reads did not read it then).
        unknown = []
        for job in jobs:
            if (job.room_id, job.up_to) not in at:
                newest = loaded.get(ids[job.room_id][0]) if ids.get(job.room_id) else None
                if newest is not None:
                    at[(job.room_id, job.up_to)] = newest.internal["state_group_after"]
                else:
                    unknown.append((job.room_id, job.up_to))
        if unknown:  # (an event gone since the read)
            at.update(await self.queries.state_groups_at(unknown))
        rooms = []
        for job in jobs:
            room_ids = ids.get(job.room_id, [])
            timeline = [loaded[i] for i in reversed(room_ids[:limit]) if i in loaded]
            rooms.append(_Room(job, timeline, len(room_ids) > limit))
        visible = await self.views.visible_to_many(user_id, [(r.timeline, r.job.currently_joined) for r in rooms])
        for room, shown in zip(rooms, visible):
            keep = {e.event_id for e in shown}
            if room.job.leave_event is not None:
                # The user always learns how they left, whatever the history visibility.
                keep.add(room.job.leave_event.event_id)
            room.timeline = [e for e in room.timeline if e.event_id in keep and timeline_filter.allows(e)]

        await self._state_events(user_id, sync_filter, full_state, use_state_after, rooms, lazy_cache, at)

        kept = []
        for room in rooms:
            job = room.job
            room.account_events = [
                {"type": t, "content": c} for t, c in job.account_data.items()
                if room_filter.account_data.allows_type(t)
            ]
            room.ephemeral = [
                e for e in job.ephemeral if room_filter.ephemeral.allows_type(e["type"])
                and room_filter.ephemeral.allows_room(job.room_id)
            ]
            if (job.since is not None and not room.timeline and not room.state and not room.account_events
                    and not room.ephemeral and not full_state and job.leave_event is None):
                continue
            kept.append(room)
        if not kept:
            return {}

        counts = await self.notifications.unread_counts_many(
            user_id, {r.job.room_id: r.job.up_to for r in kept if r.job.currently_joined}, reads.unread)
        summaries = await self.queries.summaries([
            r.job.room_id for r in kept
            if r.job.since is None or any(e.type == MEMBER for e in r.timeline + r.state)
        ], user_id, MAX_HEROES)
        # Spec: aggregations are bundled when the timeline is limited; otherwise the
        # client holds every child event and aggregates them itself.
        timelines: dict[str, list[dict[str, Any]]] = {}
        for bundle in (True, False):
            chosen = [r for r in kept if r.limited == bundle]
            serialized = await self.views.serialize_lists(
                [r.timeline for r in chosen], device, include_room_id=False, bundle_aggregations=bundle)
            timelines.update((r.job.room_id, events) for r, events in zip(chosen, serialized))
        serialized = await self.views.serialize_lists([r.state for r in kept], include_room_id=False)
        states = {r.job.room_id: events for r, events in zip(kept, serialized)}

        out = {}
        for room in kept:
            job = room.job
            room_id = job.room_id
            section: dict[str, Any] = {
                "timeline": {
                    "events": timelines[room_id],
                    "limited": room.limited,
                    "prev_batch": pagination_token(
                        room.timeline[0].internal["stream_ordering"] - 1 if room.timeline else job.up_to),
                },
                "state_after" if use_state_after else "state": {"events": states[room_id]},
                "account_data": {"events": room.account_events},
                "ephemeral": {"events": room.ephemeral},
                "unread_notifications": {"notification_count": 0, "highlight_count": 0},
            }
            if room_id in counts:
                if timeline_filter.unread_thread_notifications:
                    # Spec: then unread_notifications counts the main timeline only, and each
                    # thread with unread notifications has its counts under its root's id.
                    section["unread_notifications"] = counts[room_id].main
                    section["unread_thread_notifications"] = counts[room_id].threads
                else:
                    section["unread_notifications"] = counts[room_id].total()
            if room_id in summaries:
                summary = summaries[room_id]
                present = [u for u, m in summary.candidates if m in ("join", "invite")]
                # Spec: the first 5 joined or invited members by stream order, never the user;
                # the members who left or were banned only when there is no one else.
                section["summary"] = {
                    "m.heroes": present or [u for u, m in summary.candidates if m in ("leave", "ban")],
                    "m.joined_member_count": summary.joined,
                    "m.invited_member_count": summary.invited,
                }
            for event in room.state + room.timeline:
                if event.type == MEMBER and event.state_key is not None:
                    sent_members[(room_id, event.state_key)] = event.event_id
            out[room_id] = section
        return out

    def read_ahead(
        self, user_id: str, sync_filter: SyncFilter, since: int, up_to: int, room_ids: Sequence[str],
        ignored: Awaitable[frozenset[str]],
    ) -> ReadAhead:
        """Start the room reads of an incremental sync (no full state) in rooms the user
        is guessed to be joined to, before the rooms are known: ``build`` takes from it
        the windows it guessed right and reads the others. On the wake of a long poll,
        the guess is the rooms of the last sync whose streams moved, and the reads run
        beside the memberships read instead of after it."""
        windows = {r: RoomWindow(r, since, up_to, state_at_after=True) for r in room_ids}

        async def read() -> _ReadAheadResult:
            limit, sql_filter = _timeline_read(sync_filter, await ignored)
            request = await self.notifications.unread_request(user_id, dict.fromkeys(windows, up_to))
            reads = await self.queries.room_reads(list(windows.values()), limit + 1, sql_filter, request)
            return _ReadAheadResult(windows, limit + 1, sql_filter, request, reads)

        return ReadAhead(guessed(read()))

    async def _room_reads(
        self, windows: list[RoomWindow], limit: int, sql_filter: EventFilterSql, request: UnreadRequest,
        ahead: ReadAhead | None,
    ) -> RoomReads:
        """``SyncQueries.room_reads``, less what ``ahead`` read already of the same windows."""
        early = await ahead.task if ahead is not None else None
        if (early is None or early.limit != limit or early.sql_filter != sql_filter
                or early.request.not_senders != request.not_senders or early.request.limit != request.limit):
            return await self.queries.room_reads(windows, limit, sql_filter, request)
        known = early.reads
        reused = [w for w in windows if early.windows.get(w.room_id) == w
                  and (w.room_id not in request.up_to or w.room_id in known.unread)]
        taken = {w.room_id for w in reused}
        missing = [w for w in windows if w.room_id not in taken]
        out = await self.queries.room_reads(
            missing, limit, sql_filter,
            dataclasses.replace(request, up_to={r: u for r, u in request.up_to.items() if r not in taken}),
        ) if missing else RoomReads({}, {}, {}, {})
        for w in reused:
            out.timelines[w.room_id] = known.timelines[w.room_id]
            out.groups_before[w.room_id] = known.groups_before[w.room_id]
            for key in ((w.room_id, w.after), (w.room_id, w.up_to)):
                if key in known.state_groups:
                    out.state_groups[key] = known.state_groups[key]
            if w.room_id in request.up_to:
                out.unread[w.room_id] = known.unread[w.room_id]
        return out

    async def _prefetch_state(
        self, user_id: str, sync_filter: SyncFilter, full_state: bool, use_state_after: bool,
        jobs: Sequence[RoomJob], reads: RoomReads, limit: int,
    ) -> None:
        """Read, beside the timelines' events, the state groups that ``_state_events`` (and
        the visibility check before it) will most likely ask for, and the state events of
        the sections that send the whole state; they are read again from the caches. The
        first /sync after a restart otherwise finds none of them cached and reads them one
        after another: the events, the visibility's groups and events, then the state's.
        A guess (the state before the oldest event the timeline may show): when the
        timeline's filters leave that event out, the state is read as before."""
        room_filter = sync_filter.room
        lazy = room_filter.lazy_load_members
        groups: list[int | None] = []
        whole: list[int | None] = []
        for job in jobs:
            shown = reads.timelines.get(job.room_id, [])[:limit]
            if shown and not use_state_after:
                group = reads.groups_before[job.room_id][len(shown) - 1]
            else:
                group = reads.state_groups.get((job.room_id, job.up_to))
            groups.append(group)
            if job.since is None or full_state:
                whole.append(group)
            else:
                groups.append(reads.state_groups.get((job.room_id, job.since.events)))
        states = await self.state.get_states(groups)
        wanted = []
        for group in whole:
            for key, event_id in states.get(group, {}).items() if group is not None else ():
                # Lazy loading sends the members of the timeline's senders only: those are
                # read later, the user's own membership (the visibility check's) now.
                if not lazy or key[0] != MEMBER or key[1] == user_id:
                    wanted.append(event_id)
        if wanted:
            await self.events.get_events(wanted)

    async def _state_events(
        self, user_id: str, sync_filter: SyncFilter, full_state: bool, use_state_after: bool,
        rooms: list[_Room], lazy_cache: LruCache[tuple[str, str], str] | None,
        at: dict[tuple[str, int], int | None],
    ) -> None:
        """Each room's state up to the start of its timeline (``state``), or with
        use_state_after up to its end (``state_after``): all of it, or what changed since
        the room's ``since``. ``at`` holds the state groups at each room's up_to and since."""
        room_filter = sync_filter.room
        lazy = room_filter.lazy_load_members
        redundant = room_filter.state.include_redundant_members or room_filter.timeline.include_redundant_members
        targets: list[int | None] = []
        for room in rooms:
            if room.timeline and not use_state_after:
                targets.append(room.timeline[0].internal.get("state_group_before"))
            else:
                # The end of the window rather than the last event shown: state events a
                # timeline filter left out still reach the client.
                targets.append(at.get((room.job.room_id, room.job.up_to)))
        groups = await self.state.get_states(
            targets + [at.get((r.job.room_id, r.job.since.events)) for r in rooms if r.job.since is not None])
        wanted: list[list[str]] = []
        for room, target_group in zip(rooms, targets):
            job = room.job
            target = groups.get(target_group, {}) if target_group is not None else {}
            senders = {e.sender for e in room.timeline}
            if job.since is None or full_state:
                state_ids: dict[StateKey, str] = dict(target)
                if lazy:
                    # Lazy loading: only the timeline's senders and the user themself.
                    state_ids = {
                        k: v for k, v in state_ids.items() if k[0] != MEMBER or k[1] in senders | {user_id}
                    }
            else:
                since_group = at.get((job.room_id, job.since.events))
                at_since = groups.get(since_group, {}) if since_group is not None else {}
                state_ids = {k: v for k, v in target.items() if at_since.get(k) != v}
                if lazy:
                    # The delta keeps every membership change in the gap (the spec's MUST), and
                    # each sender's membership is added unless the device already has it.
                    for sender in senders:
                        key = (MEMBER, sender)
                        if key in target and key not in state_ids and (
                                redundant or lazy_cache is None
                                or lazy_cache.get((job.room_id, sender)) != target[key]):
                            state_ids[key] = target[key]
            # `state` never repeats the timeline; `state_after` is complete on its own, as
            # clients then ignore the state events of the timeline.
            excluded = set() if use_state_after else {e.event_id for e in room.timeline}
            wanted.append([v for v in state_ids.values() if v not in excluded])
        loaded = await self.events.get_events({i for ids in wanted for i in ids})
        for room, ids in zip(rooms, wanted):
            events = [loaded[i] for i in dict.fromkeys(ids) if i in loaded and room_filter.state.allows(loaded[i])]
            events.sort(key=lambda e: e.internal["stream_ordering"])
            room.state = events
