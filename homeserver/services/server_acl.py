"""Whether a room's current m.room.server_acl lets a server take part.

Spec: https://spec.matrix.org/v1.19/server-server-api/#server-access-control-lists-acls
The matching rules are pure (homeserver/protocol/server_acl.py); this reads the
room's current ACL event for them. Every federation path that applies ACLs asks here.
"""

from __future__ import annotations

from homeserver.protocol.server_acl import server_allowed
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore


async def acl_allows(state: StateStore, events: EventStore, room_id: str, server_name: str) -> bool:
    acl_id = await state.get_current_state_event_id(room_id, "m.room.server_acl", "")
    if acl_id is None:
        return True
    acl = await events.get_event(acl_id)
    return acl is None or server_allowed(acl.content, server_name)
