"""POST /search: server-side search of room events.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3search
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from homeserver.client.base import V3, Body, requester, services
from homeserver.errors import bad_json, invalid_param
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.protocol.filters import FilterError, parse_event_filter
from homeserver.services.search import (
    GROUP_KEYS, MAX_CONTEXT, SEARCH_KEYS, EventContextSpec, RoomEventsSearch,
)

routes = web.RouteTableDef()


class EventContext(Body):
    before_limit: int = 5
    after_limit: int = 5
    include_profile: bool = False


class Group(Body):
    key: str


class Groupings(Body):
    group_by: list[Group] = []


class RoomEventsCriteria(Body):
    search_term: str
    keys: list[str] = Field(default_factory=lambda: list(SEARCH_KEYS))
    # A RoomEventFilter, parsed by protocol/filters.py (which names the bad field).
    filter: dict[str, Any] | None = None
    order_by: str = "rank"
    event_context: EventContext | None = None
    groupings: Groupings | None = None
    include_state: bool = False


class Categories(Body):
    room_events: RoomEventsCriteria | None = None


class SearchBody(Body):
    search_categories: Categories


@routes.post(V3 + "/search")
async def search(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(SearchBody, await read_json_object(request))
    categories = body.search_categories
    answer: dict[str, Any] = {}
    if "room_events" in categories.model_fields_set:
        if categories.room_events is None:
            raise bad_json("search_categories.room_events must be an object")
        criteria = room_events_search(categories.room_events)
        answer["room_events"] = await services(request).search.search_room_events(
            who, criteria, request.query.get("next_batch"))
    return json_response({"search_categories": answer})


def room_events_search(raw: RoomEventsCriteria) -> RoomEventsSearch:
    """The service's criteria; an unknown value (the types are the model's) is M_INVALID_PARAM naming the field."""
    for key in raw.keys:
        if key not in SEARCH_KEYS:
            raise invalid_param(f"keys: {key!r} is not one of {', '.join(SEARCH_KEYS)}")
    try:
        event_filter = parse_event_filter(raw.filter, "filter.")
    except FilterError as e:
        raise bad_json(str(e))
    if raw.order_by not in ("rank", "recent"):
        raise invalid_param("order_by must be 'rank' or 'recent'")
    return RoomEventsSearch(
        search_term=raw.search_term,
        keys=tuple(raw.keys),
        event_filter=event_filter,
        order_by_rank=raw.order_by == "rank",
        event_context=_event_context(raw.event_context),
        group_by=_group_by(raw.groupings),
        include_state=raw.include_state,
    )


def _event_context(raw: EventContext | None) -> EventContextSpec | None:
    if raw is None:
        return None
    for name, value in (("before_limit", raw.before_limit), ("after_limit", raw.after_limit)):
        if not 0 <= value <= MAX_CONTEXT:
            raise invalid_param(f"event_context.{name} must be between 0 and {MAX_CONTEXT}")
    return EventContextSpec(raw.before_limit, raw.after_limit, raw.include_profile)


def _group_by(raw: Groupings | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    keys: list[str] = []
    for group in raw.group_by:
        if group.key not in GROUP_KEYS:
            raise invalid_param(f"groupings: cannot group by {group.key!r} (room_id or sender)")
        if group.key not in keys:
            keys.append(group.key)
    return tuple(keys)
