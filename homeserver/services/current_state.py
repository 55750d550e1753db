"""Loading a few of a room's current state events, e.g. those the power level checks need."""

from __future__ import annotations

from homeserver.protocol.events import Event, StateKey
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore


async def current_state_events(
    state: StateStore, events: EventStore, room_id: str, keys: list[StateKey]
) -> dict[StateKey, Event]:
    ids = await state.get_current_state_ids_for(room_id, keys)
    loaded = await events.get_events(ids.values())
    return {key: loaded[event_id] for key, event_id in ids.items() if event_id in loaded}
