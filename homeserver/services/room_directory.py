"""The published room directory: which rooms are listed, and the listing itself.

Spec: https://spec.matrix.org/v1.19/client-server-api/#published-room-directory
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.protocol import power_levels
from homeserver.services.auth import Requester
from homeserver.services.current_state import current_state_events
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import PublishedRoom, PublishedRoomsQuery, RoomStore
from homeserver.storage.state import StateStore

# A page without a limit, or with a larger one, holds this many rooms.
MAX_PAGE = 500


@dataclasses.dataclass(frozen=True)
class DirectoryRequest:
    limit: int | None = None
    since: str | None = None
    search_term: str | None = None
    room_types: list[str | None] | None = None
    third_party_instance_id: str | None = None
    include_all_networks: bool = False


class RoomDirectoryService:
    def __init__(self, rooms: RoomStore, state: StateStore, events: EventStore):
        self.rooms = rooms
        self.state = state
        self.events = events

    async def visibility(self, room_id: str) -> str:
        published = await self.rooms.get_visibility(room_id)
        if published is None:
            raise not_found("Room not found")
        return "public" if published else "private"

    async def set_visibility(self, requester: Requester, room_id: str, visibility: str) -> None:
        """Publish or unpublish a room: server admins, and members who may set the room's
        canonical alias (the room's own say in how it is found), may do so."""
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        if await self.rooms.get_visibility(room_id) is None:
            raise not_found("Room not found")
        if not requester.is_admin:
            await self._check_may_publish(requester.user_id, room_id)
        await self.rooms.set_visibility(room_id, visibility == "public")

    async def _check_may_publish(self, user_id: str, room_id: str) -> None:
        membership = await self.state.get_membership(room_id, user_id)
        if membership is None or membership[0] != "join":
            raise forbidden("You must be in the room to change its visibility in the directory")
        keys = [power_levels.CREATE_KEY, power_levels.POWER_LEVELS_KEY]
        auth_state = await current_state_events(self.state, self.events, room_id, keys)
        level = power_levels.get_user_power_level(user_id, auth_state)
        if level < power_levels.get_required_level(auth_state, "m.room.canonical_alias", True):
            raise forbidden("You need the power to set the room's canonical alias to publish it")

    async def list(self, request: DirectoryRequest) -> dict[str, Any]:
        """One page of the directory. Tokens name the first or last room of a page."""
        if request.include_all_networks and request.third_party_instance_id is not None:
            raise invalid_param("Use either include_all_networks or third_party_instance_id, not both")
        if request.limit is not None and request.limit < 0:
            raise invalid_param("limit must not be negative")
        total = await self.rooms.count_published()
        if request.third_party_instance_id is not None:
            # No application services bridge networks here: a named network has no rooms.
            return {"chunk": [], "total_room_count_estimate": 0}
        limit = min(request.limit, MAX_PAGE) if request.limit is not None else MAX_PAGE
        after = before = None
        if request.since is not None:
            direction, key = _parse_token(request.since)
            if direction == "f":
                after = key
            else:
                before = key
        room_types = None
        include_untyped = False
        if request.room_types is not None:
            room_types = tuple(t for t in request.room_types if t is not None)
            include_untyped = None in request.room_types
        rooms = await self.rooms.published_rooms(PublishedRoomsQuery(
            limit=limit + 1, search_term=request.search_term or None, room_types=room_types,
            include_untyped=include_untyped, after=after, before=before,
        ))
        more = len(rooms) > limit
        if before is not None:
            rooms = rooms[len(rooms) - limit:] if more else rooms
        else:
            rooms = rooms[:limit]
        response: dict[str, Any] = {"chunk": [_chunk(r) for r in rooms], "total_room_count_estimate": total}
        if rooms:
            # Going forward, there are earlier rooms when we started from a token; going
            # back, when the page was full. Later rooms: the reverse.
            has_earlier = more if before is not None else after is not None
            has_later = more if before is None else True
            if has_later:
                response["next_batch"] = _token("f", rooms[-1])
            if has_earlier:
                response["prev_batch"] = _token("b", rooms[0])
        return response


def _chunk(room: PublishedRoom) -> dict[str, Any]:
    """A PublishedRoomsChunk from the room's state contents."""
    def field(event_type: str, key: str) -> Any:
        content = room.state.get(event_type)
        return content.get(key) if isinstance(content, dict) else None

    chunk: dict[str, Any] = {
        "room_id": room.room_id,
        "num_joined_members": room.joined_members,
        "world_readable": field("m.room.history_visibility", "history_visibility") == "world_readable",
        "guest_can_join": field("m.room.guest_access", "guest_access") == "can_join",
    }
    for name, event_type, key in (
        ("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
        ("canonical_alias", "m.room.canonical_alias", "alias"), ("avatar_url", "m.room.avatar", "url"),
        ("join_rule", "m.room.join_rules", "join_rule"), ("room_type", "m.room.create", "type"),
    ):
        value = field(event_type, key)
        if isinstance(value, str) and value:
            chunk[name] = value
    return chunk


def _token(direction: str, room: PublishedRoom) -> str:
    raw = json.dumps([direction, room.joined_members, room.room_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_token(token: str) -> tuple[str, tuple[int, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        direction, joined, room_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise invalid_param("Invalid pagination token")
    if (direction not in ("f", "b") or isinstance(joined, bool) or not isinstance(joined, int)
            or not 0 <= joined < 2**63 or not isinstance(room_id, str) or "\x00" in room_id):
        raise invalid_param("Invalid pagination token")
    return direction, (joined, room_id)
