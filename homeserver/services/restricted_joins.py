"""Restricted rooms (v8+): who may join through membership of another room, and who vouches.

A join of a ``restricted`` (or ``knock_restricted``) room by a user neither
invited nor joined must name, in ``join_authorised_via_users_server``, a
member of a resident server who may invite; that server signs the join. The
local join path and the federation's make_join both ask here.
Spec: https://spec.matrix.org/v1.19/client-server-api/#restricted-rooms
"""

from __future__ import annotations

from homeserver.errors import forbidden
from homeserver.protocol import ids
from homeserver.protocol.auth_rules import get_named_level, get_user_power_level
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore

RESTRICTED_RULES = ("restricted", "knock_restricted")


class RestrictedJoins:
    def __init__(self, server_name: str, events: EventStore, state: StateStore):
        self.server_name = server_name
        self.events = events
        self.state = state

    async def authoriser(self, room_id: str, user_id: str) -> str | None:
        """The local user to vouch for the join, or None when none is needed.

        Raises 403 when the room is restricted and the user is in none of the
        allowed rooms (a knock_restricted room may still be knocked on: None).
        """
        version = await self.events.get_room_version(room_id)
        if version is None or not version.restricted_join_allowed:
            return None
        rule_id = await self.state.get_current_state_event_id(room_id, "m.room.join_rules", "")
        rule = await self.events.get_event(rule_id) if rule_id else None
        if rule is None or rule.content.get("join_rule") not in RESTRICTED_RULES:
            return None
        current = await self.state.get_membership(room_id, user_id)
        if current is not None and current[0] in ("join", "invite"):
            return None  # already let in: no one needs to vouch
        if not await self._in_an_allowed_room(rule.content.get("allow"), user_id):
            if rule.content.get("join_rule") == "knock_restricted":
                return None
            raise forbidden("You are not in any of the rooms whose members may join this room")
        state_ids = await self.state.get_current_state_ids(room_id)
        candidates = sorted(
            key[1] for key, _ in state_ids.items()
            if key[0] == "m.room.member" and ids.server_name_of(key[1]) == self.server_name
        )
        wanted = [state_ids[k] for k in (("m.room.create", ""), ("m.room.power_levels", "")) if k in state_ids]
        wanted += [state_ids[("m.room.member", c)] for c in candidates]
        loaded = await self.events.get_events(wanted)
        auth_state = {e.state_tuple: e for e in loaded.values()}
        invite_level = get_named_level(auth_state, "invite")
        for candidate in candidates:
            member = auth_state.get(("m.room.member", candidate))
            if member is not None and member.membership == "join" and (
                    get_user_power_level(candidate, auth_state) >= invite_level):
                return candidate
        raise forbidden("No member of this server may let you in; ask for an invite")

    async def _in_an_allowed_room(self, allow: object, user_id: str) -> bool:
        if not isinstance(allow, list):
            return False
        for entry in allow:
            if isinstance(entry, dict) and entry.get("type") == "m.room_membership":
                allowed = entry.get("room_id")
                if isinstance(allowed, str):
                    membership = await self.state.get_membership(allowed, user_id)
                    if membership is not None and membership[0] == "join":
                        return True
        return False
