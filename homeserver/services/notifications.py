"""Unread notification counts of /sync: the user's push rules evaluated for new room events.

Events are evaluated when a sync first needs them (each once per user, the result
kept in event_push_actions), against the room as it is then: its member count,
the user's display name and the power levels. The counts are read afresh on
each sync, so a new read receipt lowers them at once.
Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from homeserver.protocol import power_levels, push_rules
from homeserver.protocol.events import Event
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.push_rules import PushRulesService
from homeserver.storage.events import EventFilterSql, EventStore
from homeserver.storage.push_actions import PushAction, PushActionStore
from homeserver.storage.state import StateStore
from homeserver.storage.sync_queries import RoomWindow, SyncQueries

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
        ignored_users: IgnoredUsers | None = None, queries: SyncQueries | None = None,
    ):
        self.ignored_users = ignored_users
        self.queries = queries or SyncQueries(store.db)
        self.events = events
        self.state = state
        self.push_rules = push_rules_
        self.store = store

    async def unread_counts(self, user_id: str, room_id: str, up_to: int) -> UnreadCounts:
        """The user's unread counts in a room they are joined to, at stream position ``up_to``."""
        return (await self.unread_counts_many(user_id, {room_id: up_to}))[room_id]

    async def unread_counts_many(self, user_id: str, up_to: dict[str, int]) -> dict[str, UnreadCounts]:
        """``unread_counts`` of many rooms (room id -> position), with a fixed number of
        queries whatever the number of rooms."""
        room_ids = list(up_to)
        if not room_ids:
            return {}
        # Three independent reads, side by side (a /sync waits for them).
        reads, joined_at, evaluated = await asyncio.gather(
            self.store.read_positions_many(user_id, room_ids),
            self.queries.membership_positions(user_id, room_ids),
            self.store.evaluated_up_to_many(user_id, room_ids),
        )
        # Events from before the user's latest join never count, as if read (also those
        # found before they left, should they come back).
        for room_id in room_ids:
            reads[room_id][""] = max(reads[room_id].get("", 0), joined_at.get(room_id, 0))
        starts = {r: max(evaluated.get(r, 0), reads[r][""]) for r in room_ids}
        pending = [r for r in room_ids if starts[r] < up_to[r]]
        if pending:
            found = await self._evaluate(user_id, {r: (starts[r], up_to[r]) for r in pending})
            await self.store.record_many(
                user_id, {r: (found.get(r, []), up_to[r], reads[r][""]) for r in pending})
        rows = await self.store.unread_counts_many(user_id, up_to, reads)
        out = {}
        for room_id in room_ids:
            main = _counts()
            threads: dict[str, dict[str, int]] = {}
            for count in rows[room_id]:
                counts = _counts(count.notifications, count.highlights)
                if count.thread_id == MAIN_THREAD:
                    main = counts
                else:
                    threads[count.thread_id] = counts
            out[room_id] = UnreadCounts(main, threads)
        return out

    async def _evaluate(self, user_id: str, windows: dict[str, tuple[int, int]]) -> dict[str, list[PushAction]]:
        # Nothing an ignored user sends notifies (spec: "Ignoring Users"), and homeservers
        # MUST NOT notify users of their own events: those are left out in SQL, not loaded.
        ignored = await self.ignored_users.ignored_by(user_id) if self.ignored_users is not None else frozenset()
        ids = await self.queries.timelines(
            [RoomWindow(r, after, upper) for r, (after, upper) in windows.items()], MAX_EVALUATED,
            EventFilterSql(not_senders=(user_id, *ignored)))
        ids = {r: i for r, i in ids.items() if i}
        if not ids:
            return {}
        loaded = await self.events.get_events(i for room_ids in ids.values() for i in room_ids)
        rules = await self.push_rules.compiled(user_id)
        facts, member_counts = await asyncio.gather(
            self._room_facts(list(ids), user_id), self.queries.member_counts(list(ids)))
        out: dict[str, list[PushAction]] = {}
        for room_id, room_event_ids in ids.items():
            room = facts[room_id]
            found = out.setdefault(room_id, [])
            for event_id in reversed(room_event_ids):
                event = loaded.get(event_id)
                if event is None:
                    continue
                context = push_rules.RoomContext(
                    user_id=user_id, member_count=member_counts.get(room_id, 0), display_name=room.display_name,
                    sender_power_level=power_levels.get_user_power_level(event.sender, room.auth_state),
                    notification_levels=room.notification_levels,
                )
                outcome = push_rules.outcome(rules(event.json, context))
                if outcome.notify:
                    found.append(PushAction(event.internal["stream_ordering"], _thread_of(event), outcome.highlight))
        return out

    async def _room_facts(self, room_ids: list[str], user_id: str) -> dict[str, _RoomFacts]:
        keys = [power_levels.CREATE_KEY, power_levels.POWER_LEVELS_KEY, ("m.room.member", user_id)]
        ids = await self.queries.current_state_ids_for(room_ids, keys)
        loaded = await self.events.get_events(i for room in ids.values() for i in room.values())
        out = {}
        for room_id in room_ids:
            state = {k: loaded[i] for k, i in ids.get(room_id, {}).items() if i in loaded}
            member = state.pop(("m.room.member", user_id), None)
            name = member.content.get("displayname") if member is not None else None
            power = state.get(power_levels.POWER_LEVELS_KEY)
            levels = power.content.get("notifications") if power is not None else None
            out[room_id] = _RoomFacts(
                auth_state=state, display_name=name if isinstance(name, str) else None,
                notification_levels=levels if isinstance(levels, dict) else {},
            )
        return out


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
