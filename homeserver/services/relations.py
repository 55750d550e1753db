"""Event relationships: checks on sending them, the relations API and the threads list.

Spec: https://spec.matrix.org/v1.19/client-server-api/#relationships-api
and https://spec.matrix.org/v1.19/client-server-api/#querying-threads-in-a-room
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import not_found
from homeserver.services.auth import Requester
from homeserver.services.event_views import EventViews
from homeserver.services.room_events import RoomEventsService
from homeserver.services.tokens import pagination_token, parse_pagination_token
from homeserver.storage.events import EventStore
from homeserver.storage.relations import MAX_RECURSION_DEPTH, RelationStore
from homeserver.storage.streams import StreamIdGenerator


class RelationsService:
    def __init__(
        self, events: EventStore, relations: RelationStore, views: EventViews,
        room_events: RoomEventsService, stream: StreamIdGenerator,
    ):
        self.events = events
        self.relations = relations
        self.views = views
        self.room_events = room_events
        self.stream = stream

    async def children(
        self, requester: Requester, room_id: str, parent_id: str, rel_type: str | None, event_type: str | None,
        from_token: str | None, to_token: str | None, backwards: bool, limit: int, recurse: bool | None,
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]."""
        access = await self.room_events.access(requester.user_id, room_id)
        joined = access.membership == "join"
        ceiling = access.up_to if access.up_to is not None else self.stream.current()
        parent = await self.events.get_event(parent_id)
        if (
            parent is None or parent.room_id != room_id or parent.internal.get("rejected")
            or parent.internal["stream_ordering"] > ceiling
            or not await self.views.visible_to(requester.user_id, [parent], joined)
        ):
            raise not_found("Event not found")
        start = parse_pagination_token(from_token) if from_token is not None else None
        end = parse_pagination_token(to_token) if to_token is not None else None
        # Tokens name the point after a position, as in /messages.
        if backwards:
            upper = min(start, ceiling) if start is not None else ceiling
            lower = end if end is not None else 0
        else:
            lower = start if start is not None else 0
            upper = min(end, ceiling) if end is not None else ceiling
        ids = await self.relations.children(
            room_id, parent_id, rel_type, event_type, lower, upper, limit + 1, backwards, bool(recurse)
        )
        has_more = len(ids) > limit
        ids = ids[:limit]
        loaded = await self.events.get_events(ids)
        page = [loaded[i] for i in ids if i in loaded]
        visible = await self.views.visible_to(requester.user_id, page, joined)
        result: dict[str, Any] = {
            "chunk": await self.views.serialize(visible, (requester.user_id, requester.device_id)),
        }
        if has_more and page:
            last = page[-1].internal["stream_ordering"]
            result["next_batch"] = pagination_token(last - 1 if backwards else last)
        if from_token is not None:
            result["prev_batch"] = from_token
        if recurse is not None:
            # Spec: present exactly when the client gave `recurse`.
            result["recursion_depth"] = MAX_RECURSION_DEPTH if recurse else 0
        return result

    async def threads(
        self, requester: Requester, room_id: str, participated: bool, from_token: str | None, limit: int
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/threads: thread roots, the most recently active first."""
        access = await self.room_events.access(requester.user_id, room_id)
        joined = access.membership == "join"
        ceiling = access.up_to if access.up_to is not None else self.stream.current()
        up_to = min(parse_pagination_token(from_token), ceiling) if from_token is not None else ceiling
        roots = await self.relations.thread_roots(
            room_id, up_to, ceiling, limit + 1, requester.user_id if participated else None
        )
        has_more = len(roots) > limit
        roots = roots[:limit]
        loaded = await self.events.get_events(root_id for root_id, _ in roots)
        events = [loaded[root_id] for root_id, _ in roots if root_id in loaded]
        visible = await self.views.visible_to(requester.user_id, events, joined)
        result: dict[str, Any] = {
            "chunk": await self.views.serialize(visible, (requester.user_id, requester.device_id)),
        }
        if has_more and roots:
            result["next_batch"] = pagination_token(roots[-1][1] - 1)
        return result
