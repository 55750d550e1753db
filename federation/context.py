"""What every federation route and task shares: the client, keys, sender, receiver, and room facts."""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.errors import forbidden
from homeserver.protocol import ids
from homeserver.protocol.auth_rules import get_named_level, get_user_power_level
from homeserver.protocol.client_format import stripped_state_event
from homeserver.protocol.server_acl import server_allowed
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
        acl_id = await self.services.state.get_current_state_event_id(room_id, "m.room.server_acl", "")
        if acl_id is None:
            return
        acl = await self.services.events.get_event(acl_id)
        if acl is not None and not server_allowed(acl.content, origin):
            raise forbidden(f"{origin} is banned from this room by its server ACL")

    async def restricted_join_authoriser(self, room_id: str, user_id: str) -> str | None:
        """For a restricted room: a local member who may invite, if the user is in an allowed room.

        Spec: https://spec.matrix.org/v1.19/server-server-api/#restricted-rooms
        Raises 403 when the join rule is restricted and the user is in none of
        the allowed rooms, as seen from here.
        """
        state = self.services.state
        rule_id = await state.get_current_state_event_id(room_id, "m.room.join_rules", "")
        rule = await self.services.events.get_event(rule_id) if rule_id else None
        if rule is None or rule.content.get("join_rule") not in ("restricted", "knock_restricted"):
            return None
        current = await state.get_membership(room_id, user_id)
        if current is not None and current[0] in ("join", "invite"):
            return None  # no authorisation needed
        allowed_rooms = [
            entry.get("room_id") for entry in rule.content.get("allow", [])
            if isinstance(entry, dict) and entry.get("type") == "m.room_membership"
        ]
        in_allowed = False
        for allowed in allowed_rooms:
            if isinstance(allowed, str):
                membership = await state.get_membership(allowed, user_id)
                if membership is not None and membership[0] == "join":
                    in_allowed = True
                    break
        if not in_allowed:
            if rule.content.get("join_rule") == "knock_restricted":
                return None
            raise forbidden("You are not in any of the rooms this room admits members of")
        current_ids = await state.get_current_state_ids(room_id)
        auth_state_ids = {k: v for k, v in current_ids.items()
                          if k in (("m.room.power_levels", ""), ("m.room.create", ""))}
        loaded = await self.services.events.get_events(auth_state_ids.values())
        auth_state = {k: loaded[v] for k, v in auth_state_ids.items() if v in loaded}
        invite_level = get_named_level(auth_state, "invite")
        members = await state.get_members(room_id, "join")
        for member in sorted(members):
            if ids.server_name_of(member) == self.server_name:
                loaded_member = await self.services.events.get_events([current_ids[("m.room.member", member)]])
                auth_state.update({("m.room.member", member): e for e in loaded_member.values()})
                if get_user_power_level(member, auth_state) >= invite_level:
                    return member
        raise forbidden("No user of this server may authorise the join")

    async def stripped_state(self, room_id: str) -> list[dict[str, Any]]:
        state = await self.services.state.get_current_state_ids(room_id)
        wanted = [state[(t, "")] for t in STRIPPED_STATE_TYPES if (t, "") in state]
        loaded = await self.services.events.get_events(wanted)
        return [stripped_state_event(loaded[i]) for i in wanted if i in loaded]
