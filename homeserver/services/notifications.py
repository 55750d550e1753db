"""Unread notification counts of /sync: the user's push rules evaluated for new room events.

Events are evaluated when a sync first needs them (each once per user, the result
kept in event_push_actions), against the room as it is then: its member count,
the user's display name and the power levels. The counts are read afresh on
each sync, so a new read receipt lowers them at once. What an evaluation found
is written after the response has its counts (the write is derived data, not
waited for): the user's next read of them waits for it (``settled``).
Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Callable

from homeserver.protocol import power_levels, push_rules
from homeserver.protocol.events import Event
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.push_rules import PushRulesService
from homeserver.storage.events import EventStore
from homeserver.storage.push_actions import PushAction, PushActionStore, UnreadCount, UnreadInputs
from homeserver.storage.state import StateStore
from homeserver.storage.sync_queries import UnreadRequest

log = logging.getLogger(__name__)

MAIN_THREAD = "main"
# The newest events of a room evaluated at once: a room never read for a long
# time counts its last this-many events, not its whole history.
MAX_EVALUATED = 1000


@dataclasses.dataclass(frozen=True)
class UnreadCounts:
    # Counts of the main timeline and of each thread (by root event id).
    main: dict[str, int]
    threads: dict[str, dict[str, int]]

    def total(self) -> dict[str, int]:
        out = dict(self.main)
        for counts in self.threads.values():
            for key, value in counts.items():
                out[key] += value
        return out


def _counts(notifications: int = 0, highlights: int = 0) -> dict[str, int]:
    return {"notification_count": notifications, "highlight_count": highlights}


class NotificationCounter:
    def __init__(
        self, events: EventStore, state: StateStore, push_rules_: PushRulesService, store: PushActionStore,
        ignored_users: IgnoredUsers | None = None, known_member_count: Callable[[str], int | None] | None = None,
    ):
        """``known_member_count``: a room's joined members where they are in memory (the
        pipeline keeps them to wake its users), which the read need not count then."""
        self.ignored_users = ignored_users
        self.known_member_count = known_member_count
        self.events = events
        self.state = state
        self.push_rules = push_rules_
        self.store = store
        # user id -> the recording of their last evaluation, while it is under way.
        self._recording: dict[str, asyncio.Task[None]] = {}

    async def unread_request(self, user_id: str, up_to: dict[str, int]) -> UnreadRequest:
        """What to read of some rooms (room id -> position) for their counts, for a caller
        that reads it with its own reads (/sync: with its timelines) and hands it to
        ``unread_counts_many``. Returned once the user's last evaluation is recorded."""
        await self.settled(user_id)
        # Nothing an ignored user sends notifies (spec: "Ignoring Users"), and homeservers
        # MUST NOT notify users of their own events: those are left out in SQL, not loaded.
        ignored = await self.ignored_users.ignored_by(user_id) if self.ignored_users is not None else frozenset()
        counts = {}
        if self.known_member_count is not None:
            for room_id in up_to:
                count = self.known_member_count(room_id)
                if count is not None:
                    counts[room_id] = count
        return UnreadRequest(user_id, up_to, (user_id, *ignored), MAX_EVALUATED, counts)

    async def read_inputs(self, user_id: str, up_to: dict[str, int]) -> dict[str, UnreadInputs]:
        """What ``unread_counts_many`` reads of these rooms (room id -> position), read
        for it (a caller that reads it beside other reads hands it over as ``inputs``)."""
        request = await self.unread_request(user_id, up_to)
        return await self.store.unread_inputs(user_id, up_to, request.not_senders, request.limit, request.member_counts)

    async def unread_counts_many(
        self, user_id: str, up_to: dict[str, int], inputs: dict[str, UnreadInputs] | None = None,
    ) -> dict[str, UnreadCounts]:
        """The user's unread counts in rooms they are joined to (room id -> stream
        position), with a fixed number of queries whatever the number of rooms: one read
        of what evaluation and the counts need (unless the caller read ``inputs`` of these
        rooms at these positions, as ``unread_request`` says), and one statement that
        records what evaluation found. The counts do not wait for that write (``settled``
        does): they are the stored actions the read found and the new ones."""
        room_ids = list(up_to)
        if not room_ids:
            return {}
        if inputs is None:
            inputs = await self.read_inputs(user_id, up_to)
        reads: dict[str, dict[str, int]] = {}
        found: dict[str, tuple[list[PushAction], int, int]] = {}
        pending: dict[str, UnreadInputs] = {}
        for room_id in room_ids:
            room = inputs[room_id]
            # Events from before the user's latest join never count, as if read (also those
            # found before they left, should they come back).
            reads[room_id] = {**room.read_positions, "": max(room.read_positions.get("", 0), room.joined_at)}
            if max(room.evaluated_up_to, reads[room_id][""]) < up_to[room_id]:
                found[room_id] = ([], up_to[room_id], reads[room_id][""])
                if room.event_ids:
                    pending[room_id] = room
        if pending:
            for room_id, actions in (await self._evaluate(user_id, pending)).items():
                found[room_id][0].extend(actions)
        self._record(user_id, found)
        return {room_id: _unread_counts(inputs[room_id].stored, found.get(room_id, ([], 0, 0))[0], reads[room_id])
                for room_id in room_ids}

    async def settled(self, user_id: str) -> None:
        """Until what the user's last evaluation found is recorded: a read after this sees
        it (else it would evaluate the same events again)."""
        task = self._recording.get(user_id)
        if task is not None:
            await asyncio.wait([task])

    async def settle_all(self) -> None:
        """Until every recording under way is done (an orderly stop)."""
        if self._recording:
            await asyncio.wait(list(self._recording.values()))

    def _record(self, user_id: str, found: dict[str, tuple[list[PushAction], int, int]]) -> None:
        """Record ``found`` in the background, after the user's recording under way."""
        if not found:
            return
        task = asyncio.create_task(self._record_after(self._recording.get(user_id), user_id, found))
        self._recording[user_id] = task

        def done(_task: asyncio.Task[None]) -> None:
            if self._recording.get(user_id) is task:
                del self._recording[user_id]

        task.add_done_callback(done)

    async def _record_after(self, previous: asyncio.Task[None] | None, user_id: str,
                            found: dict[str, tuple[list[PushAction], int, int]]) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self.store.record(user_id, found)
        except Exception:
            # Nothing is lost: the next count evaluates these events again.
            log.exception("recording the push actions of %s failed", user_id)

    async def _evaluate(self, user_id: str, rooms: dict[str, UnreadInputs]) -> dict[str, list[PushAction]]:
        """The notifying events among each room's events to evaluate, oldest first."""
        loaded = await self.events.get_events(
            [i for room in rooms.values() for i in room.event_ids]
            + [i for room in rooms.values() for i in (room.create_event, room.power_levels_event, room.member_event)
               if i is not None])
        rules = await self.push_rules.compiled(user_id)
        out: dict[str, list[PushAction]] = {}
        for room_id, room in rooms.items():
            facts = _room_facts(room, loaded)
            level_of = power_levels.user_power_levels(facts.auth_state)
            found = out.setdefault(room_id, [])
            # One context per sender: all the room's events of a sender are evaluated in it.
            contexts: dict[str, push_rules.RoomContext] = {}
            for event_id in reversed(room.event_ids):
                event = loaded.get(event_id)
                if event is None:
                    continue
                sender = event.sender
                context = contexts.get(sender)
                if context is None:
                    context = contexts[sender] = push_rules.RoomContext(
                        user_id=user_id, member_count=room.member_count, display_name=facts.display_name,
                        sender_power_level=level_of(sender),
                        notification_levels=facts.notification_levels,
                    )
                outcome = push_rules.outcome(rules(event.json, context))
                if outcome.notify:
                    found.append(PushAction(event.internal["stream_ordering"], _thread_of(event), outcome.highlight))
        return out


def _unread_counts(stored: list[UnreadCount], new: list[PushAction], read: dict[str, int]) -> UnreadCounts:
    """The counts of a room: the stored actions after the read positions (the read
    counted them so) and the new ones after them too, the unthreaded receipt's and
    their thread's."""
    totals = {c.thread_id: [c.notifications, c.highlights] for c in stored}
    for action in new:
        if action.stream_ordering > max(read[""], read.get(action.thread_id, 0)):
            counted = totals.setdefault(action.thread_id, [0, 0])
            counted[0] += 1
            counted[1] += action.highlight
    main = _counts(*totals.pop(MAIN_THREAD, (0, 0)))
    return UnreadCounts(main, {thread: _counts(*c) for thread, c in totals.items()})


def _room_facts(room: UnreadInputs, loaded: dict[str, Event]) -> _RoomFacts:
    """What evaluation reads of the room's current state."""
    auth_state = {}
    for key, event_id in ((power_levels.CREATE_KEY, room.create_event),
                          (power_levels.POWER_LEVELS_KEY, room.power_levels_event)):
        if event_id is not None and event_id in loaded:
            auth_state[key] = loaded[event_id]
    member = loaded.get(room.member_event) if room.member_event is not None else None
    name = member.content.get("displayname") if member is not None else None
    power = auth_state.get(power_levels.POWER_LEVELS_KEY)
    levels = power.content.get("notifications") if power is not None else None
    return _RoomFacts(
        auth_state=auth_state, display_name=name if isinstance(name, str) else None,
        notification_levels=levels if isinstance(levels, dict) else {},
    )


@dataclasses.dataclass(frozen=True)
class _RoomFacts:
    """What evaluation reads of the room's current state."""

    auth_state: dict[tuple[str, str], Event]
    display_name: str | None
    notification_levels: dict[str, Any]


def _thread_of(event: Event) -> str:
    relates = event.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return root
    return MAIN_THREAD
