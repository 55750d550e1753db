"""Joining, leaving, inviting, kicking, banning: membership events for local rooms.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-membership
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.client_format import stripped_state_event
from homeserver.protocol.events import Event
from homeserver.services.pipeline import EventDraft, EventPipeline
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.users import UserStore

# State shown to invitees before they join (spec: stripped state).
STRIPPED_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
    "m.room.canonical_alias", "m.room.encryption", "m.room.topic",
)


class MembershipService:
    def __init__(
        self, server_name: str, pipeline: EventPipeline, events: EventStore, state: StateStore,
        rooms: RoomStore, users: UserStore,
    ):
        self.server_name = server_name
        self.pipeline = pipeline
        self.events = events
        self.state = state
        self.rooms = rooms
        self.users = users

    async def resolve_room(self, room_id_or_alias: str) -> str:
        if room_id_or_alias.startswith("#"):
            if not ids.is_valid_room_alias(room_id_or_alias):
                raise invalid_param("Invalid room alias")
            found = await self.rooms.get_alias(room_id_or_alias)
            if found is None:
                raise not_found("Room alias not found")
            return found[0]
        if not ids.is_valid_room_id(room_id_or_alias):
            raise invalid_param("Invalid room id or alias")
        return room_id_or_alias

    async def _profile_content(self, user_id: str) -> dict[str, Any]:
        profile = await self.users.get_profile(user_id) or {}
        content: dict[str, Any] = {}
        for key in ("displayname", "avatar_url"):
            if profile.get(key) is not None:
                content[key] = profile[key]
        return content

    async def creator_join_draft(self, user_id: str) -> EventDraft:
        content = {"membership": "join", **(await self._profile_content(user_id))}
        return EventDraft("m.room.member", user_id, content, state_key=user_id)

    async def join_as_creator(self, room_id: str, user_id: str) -> Event:
        return await self.pipeline.send(room_id, await self.creator_join_draft(user_id))

    async def join(self, user_id: str, room_id: str, reason: str | None = None) -> Event | None:
        if not await self.rooms.room_exists(room_id):
            if ids.server_name_of(room_id) not in (None, self.server_name):
                raise MatrixError(404, "M_NOT_FOUND", "Joining rooms on other servers needs federation")
            raise not_found("No known room with that id")
        content: dict[str, Any] = {"membership": "join", **(await self._profile_content(user_id))}
        if reason:
            content["reason"] = reason
        current = await self.state.get_membership(room_id, user_id)
        if current is not None and current[0] == "join":
            existing = await self.events.get_event(current[1])
            if existing is not None and dict(existing.content) == content:
                return existing  # already joined with this profile: nothing to change
        return await self._send_member(room_id, user_id, user_id, content)

    async def leave(self, user_id: str, room_id: str, reason: str | None = None) -> Event:
        current = await self.state.get_membership(room_id, user_id)
        if current is None or current[0] in ("leave", "ban"):
            if current is not None and current[0] == "leave":
                return (await self.events.get_event(current[1]))  # type: ignore[return-value]
            raise forbidden("You are not in this room")
        return await self._send_member(room_id, user_id, user_id, _with_reason({"membership": "leave"}, reason))

    async def invite(self, sender: str, room_id: str, target: str, reason: str | None = None,
                     is_direct: bool = False) -> Event:
        self.check_invite_target(target)
        content = await self.invite_content(target, is_direct)
        current = await self.state.get_membership(room_id, target)
        if current is not None and current[0] in ("join", "ban"):
            raise forbidden(f"{target} is already in the room" if current[0] == "join" else f"{target} is banned")
        internal = {"invite_room_state": await self._stripped_state(room_id, sender)}
        return await self._send_member(room_id, sender, target, _with_reason(content, reason), internal)

    async def knock(self, user_id: str, room_id: str, reason: str | None = None) -> Event:
        """Ask to join (room versions 7+); whether the room allows it is for the auth rules
        (join rule knock or knock_restricted, not banned, invited or joined)."""
        if not await self.rooms.room_exists(room_id):
            if ids.server_name_of(room_id) not in (None, self.server_name):
                raise MatrixError(404, "M_NOT_FOUND", "Knocking on rooms of other servers needs federation")
            raise not_found("No known room with that id")
        # The knocker sees the room through stripped state, as an invitee does.
        internal = {"knock_room_state": await self._stripped_state(room_id, None)}
        return await self._send_member(
            room_id, user_id, user_id, _with_reason({"membership": "knock"}, reason), internal)

    async def kick(self, sender: str, room_id: str, target: str, reason: str | None = None) -> Event:
        self._check_target(target)
        current = await self.state.get_membership(room_id, target)
        if current is None or current[0] not in ("join", "invite", "knock"):
            raise forbidden(f"{target} is not in the room")
        return await self._send_member(room_id, sender, target, _with_reason({"membership": "leave"}, reason))

    async def ban(self, sender: str, room_id: str, target: str, reason: str | None = None) -> Event:
        self._check_target(target)
        return await self._send_member(room_id, sender, target, _with_reason({"membership": "ban"}, reason))

    async def unban(self, sender: str, room_id: str, target: str, reason: str | None = None) -> Event:
        self._check_target(target)
        current = await self.state.get_membership(room_id, target)
        if current is None or current[0] != "ban":
            raise forbidden(f"{target} is not banned")
        return await self._send_member(room_id, sender, target, _with_reason({"membership": "leave"}, reason))

    async def forget(self, user_id: str, room_id: str) -> None:
        current = await self.state.get_membership(room_id, user_id)
        if current is None:
            raise not_found("You have never been in this room")
        if current[0] in ("join", "invite", "knock"):
            raise MatrixError(400, "M_UNKNOWN", "Leave the room before forgetting it")
        await self.rooms.forget(user_id, room_id)

    def check_invite_target(self, target: str) -> None:
        self._check_target(target)
        if ids.server_name_of(target) != self.server_name:
            raise forbidden("Inviting users of other servers needs federation, which is not enabled")

    async def invite_content(self, target: str, is_direct: bool = False) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": "invite", **(await self._profile_content(target))}
        if is_direct:
            content["is_direct"] = True
        return content

    def _check_target(self, target: str) -> None:
        # Users of any server may be banned (in advance) or unbanned: that needs no federation.
        if not ids.is_valid_user_id(target):
            raise invalid_param("Invalid user id")

    async def _stripped_state(self, room_id: str, inviter: str | None) -> list[dict[str, Any]]:
        state = await self.state.get_current_state_ids(room_id)
        wanted = [state[(t, "")] for t in STRIPPED_STATE_TYPES if (t, "") in state]
        if inviter is not None and ("m.room.member", inviter) in state:
            wanted.append(state[("m.room.member", inviter)])
        loaded = await self.events.get_events(wanted)
        return [stripped_state_event(loaded[i]) for i in wanted if i in loaded]

    async def _send_member(
        self, room_id: str, sender: str, target: str, content: dict[str, Any], internal: dict[str, Any] | None = None
    ) -> Event:
        if not await self.rooms.room_exists(room_id):
            raise not_found("No known room with that id")
        draft = EventDraft("m.room.member", sender, content, state_key=target, internal=internal or {})
        return await self.pipeline.send(room_id, draft)


def _with_reason(content: dict[str, Any], reason: str | None) -> dict[str, Any]:
    if reason:
        content["reason"] = reason
    return content
