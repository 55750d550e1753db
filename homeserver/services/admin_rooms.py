"""Server admins' view of rooms: list, details, members, state, blocking.

Synapse docs: docs/admin_api/rooms.md (List Room API, Room Details API, Room Members API,
Room State API, Block Room API, Forward Extremities Admin API).
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.admin_audit import audit
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.event_views import EventViews
from homeserver.services.membership import MembershipService
from homeserver.services.pipeline import EventPipeline
from homeserver.storage.admin_rooms import ORDER_COLUMNS, AdminRoomStore, RoomQuery
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore
from homeserver.storage.users import UserStore

# What the room list may be ordered by (order_by), and its query, for the route module.
ROOM_ORDER_BY = frozenset(ORDER_COLUMNS)
__all__ = ["AdminRoomService", "RoomQuery", "ROOM_ORDER_BY", "check_room_id"]


def check_room_id(room_id: str) -> None:
    if not ids.is_valid_room_id(room_id):
        raise invalid_param(f"{room_id!r} is not a legal room ID")


class AdminRoomService:
    def __init__(self, server_name: str, store: AdminRoomStore, state: StateStore, events: EventStore,
                 views: EventViews, membership: MembershipService, users: UserStore, pipeline: EventPipeline):
        self.server_name = server_name
        self.store = store
        self.state = state
        self.events = events
        self.views = views
        self.membership = membership
        self.users = users
        self.pipeline = pipeline

    async def list_rooms(self, query: RoomQuery) -> dict[str, Any]:
        rooms, total = await self.store.list_rooms(query, self.server_name)
        out: dict[str, Any] = {"rooms": rooms, "offset": query.offset, "total_rooms": total}
        if query.offset + len(rooms) < total:
            out["next_batch"] = query.offset + len(rooms)
        if query.offset > 0:
            out["prev_batch"] = max(0, query.offset - query.limit)
        return out

    async def details(self, room_id: str) -> dict[str, Any]:
        check_room_id(room_id)
        details = await self.store.room_details(room_id, self.server_name)
        if details is None:
            raise not_found("Room not found")
        return details

    async def members(self, room_id: str) -> dict[str, Any]:
        await self.details(room_id)
        members = sorted(await self.state.get_members(room_id, "join"))
        return {"members": members, "total": len(members)}

    async def state_events(self, room_id: str) -> dict[str, Any]:
        await self.details(room_id)
        state_ids = await self.state.get_current_state_ids(room_id)
        loaded = await self.events.get_events(state_ids.values())
        events = [loaded[event_id] for key, event_id in sorted(state_ids.items()) if event_id in loaded]
        return {"state": await self.views.serialize(events)}

    async def forward_extremities(self, room_id: str) -> dict[str, Any]:
        await self.details(room_id)
        extremities = await self.store.forward_extremities(room_id)
        return {"count": len(extremities), "results": extremities}

    async def delete_forward_extremities(self, who: Requester, room_id: str) -> dict[str, Any]:
        """Every forward extremity of the room but the newest: the next event here has one
        prev event instead of many (a room with hundreds of them is slow to write to)."""
        await self.details(room_id)
        # Under the room's lock no local write is between reading the tip and replacing it;
        # a message of another process may still cite the deleted ones (its cached tip), which
        # only leaves its event beside the newest (a fork, joined by the next event).
        async with self.pipeline.room_lock(room_id):
            deleted = await self.store.delete_forward_extremities(room_id)
            self.pipeline.room_written_elsewhere(room_id, membership=False)
        audit(who.user_id, "delete_forward_extremities", room_id, deleted=deleted)
        return {"deleted": deleted}

    async def block_status(self, room_id: str) -> dict[str, Any]:
        check_room_id(room_id)
        by = await self.store.blocked_by(room_id)
        return {"block": True, "user_id": by} if by is not None else {"block": False}

    async def set_blocked(self, who: Requester, room_id: str, block: bool) -> None:
        check_room_id(room_id)
        if block:
            await self.store.block(room_id, who.user_id, now_ms())
        else:
            await self.store.unblock(room_id)
        audit(who.user_id, "block_room" if block else "unblock_room", room_id)

    async def is_blocked(self, room_id: str) -> bool:
        return await self.store.blocked_by(room_id) is not None

    async def join_user(self, who: Requester, room_id_or_alias: str, user_id: str) -> str:
        """Join a local user to a room (Synapse docs: room_membership.md). A room that is not
        public needs the admin in it, allowed to invite: the admin invites, then the user joins."""
        if not ids.is_valid_user_id(user_id) or ids.server_name_of(user_id) != self.server_name:
            raise invalid_param("This endpoint can only be used with local users")
        user = await self.users.get_user(user_id)
        if user is None or user.deactivated:
            raise not_found("User not found")
        room_id, servers = await self.membership.resolve_room_and_servers(room_id_or_alias)
        if await self._join_rule(room_id) != "public":
            current = await self.state.get_membership(room_id, user_id)
            if current is None or current[0] not in ("invite", "join"):
                admin_in = await self.state.get_membership(room_id, who.user_id)
                if admin_in is None or admin_in[0] != "join":
                    raise forbidden("The room is not public: the server admin must be in it to join a user")
                await self.membership.invite(who.user_id, room_id, user_id)
        event = await self.membership.join(user_id, room_id, servers=servers)
        if event is None:
            raise MatrixError(400, "M_UNKNOWN", "The user could not join the room")
        audit(who.user_id, "join_user_to_room", user_id, room_id=room_id)
        return room_id

    async def _join_rule(self, room_id: str) -> str | None:
        event_id = await self.state.get_current_state_event_id(room_id, "m.room.join_rules", "")
        event = await self.events.get_event(event_id) if event_id else None
        return event.content.get("join_rule") if event is not None else None
