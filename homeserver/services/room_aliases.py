"""Room aliases on this server: look up, create, delete, list.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-aliases
Aliases of other servers are resolved by MembershipService (over federation).
"""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.auth import Requester
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore


class RoomAliasService:
    def __init__(self, server_name: str, rooms: RoomStore, state: StateStore):
        self.server_name = server_name
        self.rooms = rooms
        self.state = state

    def is_local(self, alias: str) -> bool:
        return ids.parse_room_alias(alias)[1] == self.server_name

    async def room_of(self, alias: str) -> str:
        """The room id of one of our aliases; 404 when it names none."""
        found = await self.rooms.get_alias(alias)
        if found is None:
            raise not_found("Room alias not found")
        return found[0]

    async def create(self, requester: Requester, alias: str, room_id: str) -> None:
        """Members of the room (and server admins) may give it an alias of this server."""
        if not self.is_local(alias):
            raise invalid_param("Aliases must be on this server")
        if not ids.is_valid_room_id(room_id) or not await self.rooms.room_exists(room_id):
            raise not_found("Unknown room")
        membership = await self.state.get_membership(room_id, requester.user_id)
        if not requester.is_admin and (membership is None or membership[0] != "join"):
            raise forbidden("You must be in the room to give it an alias")
        if not await self.rooms.create_alias(alias, room_id, requester.user_id):
            raise MatrixError(409, "M_UNKNOWN", "Room alias already exists")

    async def delete(self, requester: Requester, alias: str) -> None:
        found = await self.rooms.get_alias(alias)
        if found is None:
            raise not_found("Room alias not found")
        if found[1] != requester.user_id and not requester.is_admin:
            raise forbidden("Only the alias's creator or an admin may delete it")
        await self.rooms.delete_alias(alias)

    async def aliases_of_room(self, room_id: str) -> list[str]:
        """The room's local aliases; the caller checks that the user may see the room."""
        return await self.rooms.aliases_of_room(room_id)
