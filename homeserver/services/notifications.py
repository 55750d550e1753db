"""Unread notification counts of /sync: the user's push rules evaluated for new room events.

Events are evaluated when a sync first needs them (each once per user, the result
kept in event_push_actions), against the room as it is then: its member count,
the user's display name and the power levels. The counts are read afresh on
each sync, so a new read receipt lowers them at once.
Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications
"""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.protocol import power_levels, push_rules
from homeserver.protocol.events import Event
from homeserver.services.current_state import current_state_events
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.push_rules import PushRulesService
from homeserver.storage.events import EventStore
from homeserver.storage.push_actions import PushAction, PushActionStore
from homeserver.storage.state import StateStore

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
        ignored_users: IgnoredUsers | None = None,
    ):
        self.ignored_users = ignored_users
        self.events = events
        self.state = state
        self.push_rules = push_rules_
        self.store = store

    async def unread_counts(self, user_id: str, room_id: str, up_to: int) -> UnreadCounts:
        """The user's unread counts in a room they are joined to, at stream position ``up_to``."""
        read = await self.store.read_positions(user_id, room_id)
        # Events from before the user's latest join never count, as if read (also those
        # found before they left, should they come back).
        read[""] = max(read.get("", 0), await self._joined_at(user_id, room_id))
        evaluated = await self.store.evaluated_up_to(user_id, room_id) or 0
        start = max(evaluated, read[""])
        if start < up_to:
            found = await self._evaluate(user_id, room_id, start, up_to)
            await self.store.record(user_id, room_id, found, up_to, read[""])
        main = _counts()
        threads: dict[str, dict[str, int]] = {}
        for count in await self.store.unread_counts(user_id, room_id, up_to, read):
            counts = _counts(count.notifications, count.highlights)
            if count.thread_id == MAIN_THREAD:
                main = counts
            else:
                threads[count.thread_id] = counts
        return UnreadCounts(main, threads)

    async def _joined_at(self, user_id: str, room_id: str) -> int:
        membership = await self.state.get_membership(room_id, user_id)
        event = await self.events.get_event(membership[1]) if membership else None
        return event.internal.get("stream_ordering", 0) if event is not None else 0

    async def _evaluate(self, user_id: str, room_id: str, after: int, up_to: int) -> list[PushAction]:
        ids = await self.events.room_event_ids(room_id, after, up_to, MAX_EVALUATED, True)
        loaded = await self.events.get_events(ids)
        # Nothing an ignored user sends notifies (spec: "Ignoring Users").
        ignored = await self.ignored_users.ignored_by(user_id) if self.ignored_users is not None else frozenset()
        candidates = [
            loaded[i] for i in reversed(ids) if i in loaded and loaded[i].sender != user_id
            and loaded[i].sender not in ignored
        ]
        if not candidates:
            return []
        rules = await self.push_rules.ruleset(user_id)
        room = await self._room_facts(room_id, user_id)
        member_count = len(await self.state.get_members(room_id, "join"))
        found = []
        for event in candidates:
            # Homeservers MUST NOT notify users of their own events (left out above, with
            # the ignored users').
            context = push_rules.RoomContext(
                user_id=user_id, member_count=member_count, display_name=room.display_name,
                sender_power_level=power_levels.get_user_power_level(event.sender, room.auth_state),
                notification_levels=room.notification_levels,
            )
            outcome = push_rules.outcome(push_rules.evaluate(rules, event.json, context))
            if outcome.notify:
                found.append(PushAction(event.internal["stream_ordering"], _thread_of(event), outcome.highlight))
        return found

    async def _room_facts(self, room_id: str, user_id: str) -> _RoomFacts:
        keys = [power_levels.CREATE_KEY, power_levels.POWER_LEVELS_KEY, ("m.room.member", user_id)]
        state = await current_state_events(self.state, self.events, room_id, keys)
        member = state.pop(("m.room.member", user_id), None)
        name = member.content.get("displayname") if member is not None else None
        power = state.get(power_levels.POWER_LEVELS_KEY)
        levels = power.content.get("notifications") if power is not None else None
        return _RoomFacts(
            auth_state=state, display_name=name if isinstance(name, str) else None,
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
