"""What every federation route and task shares: the client, keys, sender, receiver, and room facts."""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.errors import forbidden
from homeserver.protocol.client_format import stripped_state_event
from homeserver.services.server_acl import acl_allows
from homeserver.services.container import Services
from homeserver.services.membership import STRIPPED_STATE_TYPES
from homeserver.storage.event_graph import EventGraphStore

from federation.inbound import EventReceiver


@dataclasses.dataclass
class Federation:
    server_name: str
    services: Services
    client: Any  # federation.client.FederationClient
    keyring: Any  # federation.keys.KeyRing
    sender: Any  # federation.sender.FederationSender
    receiver: EventReceiver
    graph: EventGraphStore

    async def servers_in_room(self, room_id: str) -> list[str]:
        """The servers with a joined member, ours first (as /query/directory and send_join list them)."""
        servers = await self.graph.joined_servers(room_id)
        ordered = sorted(servers - {self.server_name})
        return ([self.server_name] if self.server_name in servers else []) + ordered

    async def is_resident(self, room_id: str) -> bool:
        return self.server_name in await self.graph.joined_servers(room_id)

    async def check_acl(self, room_id: str, origin: str) -> None:
        """The room's m.room.server_acl refuses a server it bans (spec: server ACLs)."""
        if not await acl_allows(self.services.state, self.services.events, room_id, origin):
            raise forbidden(f"{origin} is banned from this room by its server ACL")

    async def stripped_state(self, room_id: str) -> list[dict[str, Any]]:
        state = await self.services.state.get_current_state_ids(room_id)
        wanted = [state[(t, "")] for t in STRIPPED_STATE_TYPES if (t, "") in state]
        loaded = await self.services.events.get_events(wanted)
        return [stripped_state_event(loaded[i]) for i in wanted if i in loaded]
