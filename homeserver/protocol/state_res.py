"""State resolution v2 (room versions 2-11) and v2.1 (room version 12), pure.

``resolve_state`` takes the state maps of the forks and a plain ``get_event``
callable (the caller preloads the events it may need into a dict) and walks
the auth DAG itself. Every walk visits an event once, so a malicious cycle in
``auth_events`` ends the walk instead of hanging it; an event ``get_event``
cannot find is treated as absent.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#state-resolution (v2) and
https://spec.matrix.org/v1.19/rooms/v12/#state-resolution (v2.1, MSC4297)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from homeserver.protocol.auth_common import AuthError
from homeserver.protocol.auth_rules import auth_types_for_event, check_auth_rules
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.power_levels import CREATE_KEY, POWER_LEVELS_KEY, get_user_power_level
from homeserver.protocol.room_versions import RoomVersion, StateResAlgorithm

__all__ = ["GetEvent", "auth_chain", "is_power_event", "resolve_state"]

GetEvent = Callable[[str], "Event | None"]


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    get_event: GetEvent,
) -> dict[StateKey, str]:
    """The resolution of ``state_sets`` ((type, state_key) -> event id maps).

    Entries whose event is missing, is not the state event for its key, or
    was rejected are left out before anything else, so no rejected event can
    reach the result (spec "Rejected events": they should not be in state).
    """
    if room_version.state_res is StateResAlgorithm.V1:
        raise ValueError(f"room version {room_version.identifier} uses state resolution v1")
    v2_1 = room_version.state_res is StateResAlgorithm.V2_1
    events = _EventCache(get_event)
    state_sets = [_usable_entries(state_set, events) for state_set in state_sets]
    if not state_sets:
        return {}

    unconflicted, conflicted = _split(state_sets)
    if not conflicted:
        return dict(unconflicted)

    # Full conflicted set: the conflicted state set, the auth difference and
    # (v2.1) the conflicted state subgraph; events we cannot load are dropped.
    full_conflicted = set(conflicted)
    full_conflicted |= _auth_difference(state_sets, events)
    if v2_1:
        full_conflicted |= _conflicted_subgraph(conflicted, events)
    full_conflicted = {
        event_id
        for event_id in full_conflicted
        if (event := events.get(event_id)) is not None and event.is_state()
    }

    # Step 1: the power events and the part of their auth chains in the full
    # conflicted set, in reverse topological power ordering.
    power_ids = {event_id for event_id in full_conflicted if is_power_event(events[event_id])}
    for event_id in list(power_ids):
        power_ids |= auth_chain([event_id], events.get) & full_conflicted
    sorted_power = _reverse_topological_power_sort(power_ids, events)

    # Step 2: iterative auth checks from the unconflicted state map (v2) or
    # from an empty map (v2.1; the create event then comes from each event's
    # auth events, or from the room id in room version 12).
    base = {} if v2_1 else dict(unconflicted)
    partial = _iterative_auth_checks(sorted_power, base, events)

    # Step 3: the other events, in mainline ordering of the resolved power levels.
    remaining = full_conflicted - power_ids
    sorted_remaining = _mainline_sort(remaining, partial.get(POWER_LEVELS_KEY), events)

    # Step 4: iterative auth checks of those on the partially resolved state.
    resolved = _iterative_auth_checks(sorted_remaining, partial, events)

    # Step 5: the unconflicted state map wins.
    resolved.update(unconflicted)
    return resolved


def is_power_event(event: Event) -> bool:
    """Power levels, join rules, and kicks and bans (a leave or ban of someone else)."""
    if not event.is_state():
        return False
    if event.state_tuple in (POWER_LEVELS_KEY, ("m.room.join_rules", "")):
        return True
    return (
        event.type == "m.room.member"
        and event.membership in ("leave", "ban")
        and event.sender != event.state_key
    )


def auth_chain(event_ids: Iterable[str], get_event: GetEvent) -> set[str]:
    """The auth chain of the events: their auth events, recursively (not themselves).

    Ids of events ``get_event`` cannot find are included (they are cited) but
    not walked past; each event is visited once, so cycles end the walk.
    """
    chain: set[str] = set()
    visited: set[str] = set()
    stack = list(event_ids)
    while stack:
        event_id = stack.pop()
        if event_id in visited:
            continue
        visited.add(event_id)
        event = get_event(event_id)
        if event is None:
            continue
        for auth_id in event.auth_event_ids:
            chain.add(auth_id)
            if auth_id not in visited:
                stack.append(auth_id)
    return chain


class _EventCache:
    """``get_event`` called at most once per id during one resolution."""

    def __init__(self, get_event: GetEvent):
        self._get_event = get_event
        self._events: dict[str, Event | None] = {}

    def get(self, event_id: str) -> Event | None:
        if event_id not in self._events:
            self._events[event_id] = self._get_event(event_id)
        return self._events[event_id]

    def __getitem__(self, event_id: str) -> Event:
        event = self.get(event_id)
        assert event is not None
        return event

    def usable(self, event_id: str) -> Event | None:
        """The event if it is known and not rejected."""
        event = self.get(event_id)
        if event is None or event.internal.get("rejected"):
            return None
        return event


def _usable_entries(state_set: Mapping[StateKey, str], events: _EventCache) -> dict[StateKey, str]:
    usable = {}
    for key, event_id in state_set.items():
        event = events.usable(event_id)
        if event is not None and event.is_state() and event.state_tuple == tuple(key):
            usable[tuple(key)] = event_id
    return usable


def _split(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], set[str]]:
    """The unconflicted state map, and the conflicted state set (as event ids).

    A key missing from some state set is conflicted, even with one value.
    """
    unconflicted: dict[StateKey, str] = {}
    conflicted: set[str] = set()
    keys = set().union(*state_sets)
    for key in keys:
        values = {state_set.get(key) for state_set in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = values.pop()
        else:
            conflicted.update(value for value in values if value is not None)
    return unconflicted, conflicted


def _auth_difference(state_sets: Sequence[Mapping[StateKey, str]], events: _EventCache) -> set[str]:
    """∪ Ci − ∩ Ci, with Ci the full auth chain of state set i.

    Ci holds the state set's own events too, as in Synapse and ruma: read
    literally the spec leaves them out, which would put an unconflicted event
    cited by only some forks into the full conflicted set. (Conflicted events
    are in the full conflicted set either way.)
    """
    chains = [
        auth_chain(state_set.values(), events.get) | set(state_set.values())
        for state_set in state_sets
    ]
    return set().union(*chains) - set.intersection(*chains)


def _conflicted_subgraph(conflicted: set[str], events: _EventCache) -> set[str]:
    """Every event on an auth_events path from one conflicted event to another.

    Such an event is reachable from a conflicted event, and a conflicted event
    is reachable from it. So walk back from the conflicted events to get the
    reachable part of the DAG, then walk its edges forwards (from auth event to
    citing event) from the conflicted events that were reached.
    """
    reachable = auth_chain(conflicted, events.get)
    cited_by: dict[str, set[str]] = {}
    for event_id in reachable | conflicted:
        event = events.get(event_id)
        if event is None:
            continue
        for auth_id in event.auth_event_ids:
            cited_by.setdefault(auth_id, set()).add(event_id)
    subgraph: set[str] = set()
    stack = [event_id for event_id in conflicted if event_id in reachable]
    while stack:
        event_id = stack.pop()
        if event_id in subgraph:
            continue
        subgraph.add(event_id)
        stack.extend(cited_by.get(event_id, ()))
    return subgraph


def _create_event_for(event: Event, events: _EventCache) -> Event | None:
    """Room version 12: the create event named by the room id ("!x" -> "$x")."""
    room_id = event.json.get("room_id")
    if not isinstance(room_id, str) or not room_id.startswith("!"):
        return None
    return events.get("$" + room_id[1:])


def _sender_power_level(event: Event, events: _EventCache) -> int | float:
    """The sender's level by the power levels (and create) event among its auth events."""
    auth_state: dict[StateKey, Event] = {}
    if event.room_version.room_id_from_create_event:
        create = _create_event_for(event, events)
        if create is not None:
            auth_state[CREATE_KEY] = create
    for auth_id in event.auth_event_ids:
        auth_event = events.get(auth_id)
        if auth_event is not None and auth_event.is_state():
            if auth_event.state_tuple in (CREATE_KEY, POWER_LEVELS_KEY):
                auth_state[auth_event.state_tuple] = auth_event
    return get_user_power_level(event.sender, auth_state)


def _reverse_topological_power_sort(event_ids: set[str], events: _EventCache) -> list[str]:
    """Kahn's algorithm over the auth DAG among ``event_ids``, smallest first.

    An edge runs from an event to each of ``event_ids`` in its auth chain (not
    just its direct auth events: the order must hold through events outside the
    set too). Ties: higher sender power level, then earlier origin_server_ts,
    then smaller event id. Events on an auth cycle never become free and are
    left out.
    """
    depends_on = {
        event_id: (auth_chain([event_id], events.get) & event_ids) - {event_id}
        for event_id in event_ids
    }
    dependants: dict[str, set[str]] = {event_id: set() for event_id in event_ids}
    for event_id, ancestors in depends_on.items():
        for ancestor in ancestors:
            dependants[ancestor].add(event_id)

    def key(event_id: str) -> tuple[float, int, str]:
        event = events[event_id]
        return (-_sender_power_level(event, events), event.origin_server_ts, event_id)

    waiting = {event_id: len(ancestors) for event_id, ancestors in depends_on.items()}
    heap = [key(event_id) for event_id, count in waiting.items() if count == 0]
    heapq.heapify(heap)
    ordered: list[str] = []
    while heap:
        event_id = heapq.heappop(heap)[2]
        ordered.append(event_id)
        for dependant in dependants[event_id]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(heap, key(dependant))
    return ordered


def _power_levels_auth_event(event: Event, events: _EventCache) -> Event | None:
    for auth_id in event.auth_event_ids:
        auth_event = events.get(auth_id)
        if auth_event is not None and auth_event.is_state():
            if auth_event.state_tuple == POWER_LEVELS_KEY:
                return auth_event
    return None


def _mainline_sort(
    event_ids: set[str], power_levels_id: str | None, events: _EventCache
) -> list[str]:
    """Mainline ordering based on the given power levels event, smallest first."""
    mainline: dict[str, int] = {}  # event id -> index i of Pi
    current = events.get(power_levels_id) if power_levels_id is not None else None
    while current is not None and current.event_id not in mainline:
        mainline[current.event_id] = len(mainline)
        current = _power_levels_auth_event(current, events)

    def position(event: Event) -> float:
        seen = {event.event_id}
        current = _power_levels_auth_event(event, events)
        while current is not None and current.event_id not in seen:
            if current.event_id in mainline:
                return mainline[current.event_id]
            seen.add(current.event_id)
            current = _power_levels_auth_event(current, events)
        return math.inf

    def key(event_id: str) -> tuple[float, int, str]:
        event = events[event_id]
        # A greater mainline position sorts first.
        return (-position(event), event.origin_server_ts, event_id)

    return sorted(event_ids, key=key)


def _iterative_auth_checks(
    event_ids: list[str], state: Mapping[StateKey, str], events: _EventCache
) -> dict[StateKey, str]:
    """Apply each event that the auth rules allow against the state so far.

    The auth state holds, for each key the auth events selection picks, the
    state's event, else the event's own (non-rejected) auth event for it.
    """
    resolved = dict(state)
    for event_id in event_ids:
        event = events[event_id]
        if event.internal.get("rejected"):
            # Never admit a rejected event into state (as Synapse: its reason
            # may not be one that the state at this point would undo).
            continue
        auth_state: dict[StateKey, Event] = {}
        for auth_id in event.auth_event_ids:
            auth_event = events.usable(auth_id)
            if auth_event is not None and auth_event.is_state():
                auth_state[auth_event.state_tuple] = auth_event
        room_version = event.room_version
        if room_version.room_id_from_create_event and event.type != "m.room.create":
            # Room version 12 auth events omit the create event; the room id names it.
            create = _create_event_for(event, events)
            if create is not None and not create.internal.get("rejected"):
                auth_state[CREATE_KEY] = create
        keys = auth_types_for_event(
            room_version, event.type, event.sender, event.state_key, event.content
        )
        for key in keys:
            state_id = resolved.get(key)
            state_event = events.usable(state_id) if state_id is not None else None
            if state_event is not None:
                auth_state[key] = state_event
        try:
            check_auth_rules(event, auth_state)
        except AuthError:
            continue
        resolved[event.state_tuple] = event_id
    return resolved
