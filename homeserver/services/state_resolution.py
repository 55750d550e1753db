"""The state before an event with several prev events: state resolution over their states.

The rules are pure (homeserver/protocol/state_res.py); this service loads what
they read (the events of every state set and their auth chains) and caches the
result per set of state groups, since a room's forks are resolved again and
again until they merge.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from homeserver.protocol import state_res
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.room_versions import RoomVersion, StateResAlgorithm
from homeserver.storage.cache import LruCache
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore


class StateResolver:
    def __init__(self, events: EventStore, state: StateStore, cache_size: int = 200):
        self.events = events
        self.state = state
        self._resolved: LruCache[tuple[int, ...], dict[StateKey, str]] = LruCache(cache_size)

    async def resolve_groups(self, version: RoomVersion, groups: Iterable[int | None]) -> dict[StateKey, str]:
        """The resolved state of several state groups (one group: its state, unchanged)."""
        distinct = tuple(sorted({g for g in groups if g is not None}))
        if not distinct:
            return {}
        if len(distinct) == 1:
            return dict(await self.state.get_state(distinct[0]))
        cached = self._resolved.get(distinct)
        if cached is not None:
            return dict(cached)
        state_sets = [await self.state.get_state(g) for g in distinct]
        resolved = await self.resolve(version, state_sets)
        self._resolved.set(distinct, resolved)
        return dict(resolved)

    async def resolve(
        self, version: RoomVersion, state_sets: Sequence[Mapping[StateKey, str]],
        extra_events: Mapping[str, Event] | None = None,
    ) -> dict[StateKey, str]:
        """Resolve state maps; ``extra_events`` are events not stored yet (a join's answer)."""
        if not state_sets:
            return {}
        first = state_sets[0]
        if all(s == first for s in state_sets[1:]):
            return dict(first)
        if version.state_res is StateResAlgorithm.V1:
            raise ValueError("state resolution v1 (room version 1) is not supported")
        loaded = await self._load_with_auth_chains(
            {event_id for s in state_sets for event_id in s.values()}, extra_events or {}
        )
        return state_res.resolve_state(version, state_sets, loaded.get)

    async def _load_with_auth_chains(self, event_ids: set[str], extra: Mapping[str, Event]) -> dict[str, Event]:
        # Breadth first over auth_events, one batch query per level: auth chains are shallow.
        loaded: dict[str, Event] = {}
        frontier = set(event_ids)
        while frontier:
            from_extra = {i: extra[i] for i in frontier if i in extra}
            fetched = await self.events.get_events(frontier - from_extra.keys())
            level = {**fetched, **from_extra}
            loaded.update(level)
            frontier = {a for e in level.values() for a in e.auth_event_ids} - loaded.keys()
            if not level:
                break
        return loaded
