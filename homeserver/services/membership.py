"""Joining, leaving, inviting, kicking, banning: membership events for local rooms.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-membership
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable, Protocol

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.client_format import stripped_state_event
from homeserver.protocol.events import Event
from homeserver.services.pipeline import EventDraft, EventPipeline
from homeserver.services.restricted_joins import RestrictedJoins
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.users import UserStore

# State shown to invitees before they join (spec: stripped state).
STRIPPED_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
    "m.room.canonical_alias", "m.room.encryption", "m.room.topic",
)


class RemoteMembership(Protocol):
    """Memberships that need other servers; federation/joins.py provides it."""

    async def join(self, user_id: str, room_id: str, servers: Iterable[str], content: dict[str, Any]) -> Event: ...

    async def countersign_invite(self, event: Event, stripped_state: list[dict[str, Any]]) -> Event: ...

    async def leave_out_of_band(self, user_id: str, room_id: str, content: dict[str, Any]) -> Event: ...

    async def knock(self, user_id: str, room_id: str, servers: Iterable[str], content: dict[str, Any]) -> Event: ...


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
        self.restricted = RestrictedJoins(server_name, events, state)
        # Set by federation/app.py when federation is on.
        self.remote: RemoteMembership | None = None
        # Alias -> (room id, servers) from the alias's server (GET /query/directory).
        self.directory_lookup: Any = None
        # Room id -> whether a server admin blocked it; set by the admin API (admin_container.py).
        self.room_blocked: Callable[[str], Awaitable[bool]] | None = None

    async def resolve_room(self, room_id_or_alias: str) -> str:
        return (await self.resolve_room_and_servers(room_id_or_alias))[0]

    async def resolve_room_and_servers(self, room_id_or_alias: str, via: Iterable[str] = ()) -> tuple[str, list[str]]:
        """The room id, and the servers to join it through (the alias's, then ``via``)."""
        servers = list(via)
        if room_id_or_alias.startswith("#"):
            if not ids.is_valid_room_alias(room_id_or_alias):
                raise invalid_param("Invalid room alias")
            found = await self.rooms.get_alias(room_id_or_alias)
            if found is not None:
                return found[0], servers
            if ids.server_name_of(room_id_or_alias) != self.server_name and self.directory_lookup is not None:
                room_id, alias_servers = await self.directory_lookup(room_id_or_alias)
                return room_id, alias_servers + servers
            raise not_found("Room alias not found")
        if not ids.is_valid_room_id(room_id_or_alias):
            raise invalid_param("Invalid room id or alias")
        origin = ids.server_name_of(room_id_or_alias)
        if origin is not None:
            servers.append(origin)
        return room_id_or_alias, servers

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

    async def join(self, user_id: str, room_id: str, reason: str | None = None,
                   servers: Iterable[str] = ()) -> Event | None:
        await self._check_not_blocked(room_id)
        content: dict[str, Any] = {"membership": "join", **(await self._profile_content(user_id))}
        if reason:
            content["reason"] = reason
        if not await self._resident(room_id):
            if self.remote is None:
                raise MatrixError(404, "M_NOT_FOUND", "Joining rooms on other servers needs federation")
            servers = list(servers)
            if not servers and ids.server_name_of(room_id) not in (None, self.server_name):
                servers = [ids.server_name_of(room_id)]
            current = await self.state.get_membership(room_id, user_id)
            if current is not None:
                # An invite names the server that sent it: the best server to join through.
                invite = await self.events.get_event(current[1])
                if invite is not None:
                    servers.insert(0, invite.internal.get("invited_via") or ids.server_name_of(invite.sender))
            if not servers:
                raise not_found("No known room with that id; give a server to join it through")
            return await self.remote.join(user_id, room_id, [s for s in servers if s], content)
        current = await self.state.get_membership(room_id, user_id)
        if current is not None and current[0] == "join":
            existing = await self.events.get_event(current[1])
            if existing is not None and dict(existing.content) == content:
                return existing  # already joined with this profile: nothing to change
        authoriser = await self.restricted.authoriser(room_id, user_id)
        if authoriser is not None:
            content["join_authorised_via_users_server"] = authoriser
        return await self._send_member(room_id, user_id, user_id, content)

    async def leave(self, user_id: str, room_id: str, reason: str | None = None) -> Event:
        current = await self.state.get_membership(room_id, user_id)
        if current is None or current[0] in ("leave", "ban"):
            if current is not None and current[0] == "leave":
                return (await self.events.get_event(current[1]))  # type: ignore[return-value]
            raise forbidden("You are not in this room")
        if current[0] in ("invite", "knock") and not await self._resident(room_id) and self.remote is not None:
            # Refusing an invite to (or retracting a knock on) a room of other servers.
            return await self.remote.leave_out_of_band(user_id, room_id, _with_reason({}, reason))
        return await self._send_member(room_id, user_id, user_id, _with_reason({"membership": "leave"}, reason))

    async def invite(self, sender: str, room_id: str, target: str, reason: str | None = None,
                     is_direct: bool = False) -> Event:
        self.check_invite_target(target)
        await self._check_not_blocked(room_id)
        content = await self.invite_content(target, is_direct)
        current = await self.state.get_membership(room_id, target)
        if current is not None and current[0] in ("join", "ban"):
            raise forbidden(f"{target} is already in the room" if current[0] == "join" else f"{target} is banned")
        stripped = await self._stripped_state(room_id, sender)
        internal = {"invite_room_state": stripped}
        content = _with_reason(content, reason)
        if ids.server_name_of(target) != self.server_name:
            assert self.remote is not None  # check_invite_target refused otherwise
            remote = self.remote
            draft = EventDraft("m.room.member", sender, content, state_key=target, internal=internal)
            return await self.pipeline.send(
                room_id, draft, countersign=lambda event: remote.countersign_invite(event, stripped))
        return await self._send_member(room_id, sender, target, content, internal)

    async def knock(self, user_id: str, room_id: str, reason: str | None = None,
                    servers: Iterable[str] = ()) -> Event:
        """Ask to join (room versions 7+); whether the room allows it is for the auth rules
        (join rule knock or knock_restricted, not banned, invited or joined)."""
        if not await self._resident(room_id):
            servers = [s for s in servers if s and s != self.server_name]
            if self.remote is not None and servers:
                return await self.remote.knock(user_id, room_id, servers, _with_reason({}, reason))
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

    async def joined_rooms(self, user_id: str) -> list[str]:
        """GET /joined_rooms: the rooms the user is joined to now, sorted."""
        rooms = await self.state.get_rooms_for_user(user_id)
        return sorted(r for r, (m, _) in rooms.items() if m == "join")

    def check_invite_target(self, target: str) -> None:
        self._check_target(target)
        if ids.server_name_of(target) != self.server_name and self.remote is None:
            raise forbidden("Inviting users of other servers needs federation, which is not enabled")

    async def invite_content(self, target: str, is_direct: bool = False) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": "invite", **(await self._profile_content(target))}
        if is_direct:
            content["is_direct"] = True
        return content

    async def _check_not_blocked(self, room_id: str) -> None:
        if self.room_blocked is not None and await self.room_blocked(room_id):
            raise forbidden("This room has been blocked on this server")

    async def _resident(self, room_id: str) -> bool:
        """Whether this server is in the room (has its state), not just invited to it."""
        if not await self.rooms.room_exists(room_id):
            return False
        return await self.events.get_forward_extremities(room_id) != []

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
