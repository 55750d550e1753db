"""POST /search: server-side search of room events.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3search
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.client.base import V3, requester, services
from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.http import json_response, read_json_object
from homeserver.protocol.filters import FilterError, parse_event_filter
from homeserver.services.search import (
    GROUP_KEYS, MAX_CONTEXT, SEARCH_KEYS, EventContextSpec, RoomEventsSearch,
)

routes = web.RouteTableDef()


@routes.post(V3 + "/search")
async def search(request: web.Request) -> web.Response:
    who = await requester(request)
    body = await read_json_object(request)
    categories = body.get("search_categories")
    if categories is None:
        raise missing_param("Missing parameter: search_categories")
    if not isinstance(categories, dict):
        raise bad_json("search_categories must be an object")
    answer: dict[str, Any] = {}
    if "room_events" in categories:
        criteria = parse_room_events(categories["room_events"])
        answer["room_events"] = await services(request).search.search_room_events(
            who, criteria, request.query.get("next_batch"))
    return json_response({"search_categories": answer})


def parse_room_events(raw: Any) -> RoomEventsSearch:
    """The room_events criteria, strictly: a wrong type or unknown value is a 400 naming the field."""
    if not isinstance(raw, dict):
        raise bad_json("search_categories.room_events must be an object")
    term = raw.get("search_term")
    if term is None:
        raise missing_param("Missing parameter: search_categories.room_events.search_term")
    if not isinstance(term, str):
        raise bad_json("search_term must be a string")
    keys = raw.get("keys", list(SEARCH_KEYS))
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise bad_json("keys must be a list of strings")
    for key in keys:
        if key not in SEARCH_KEYS:
            raise invalid_param(f"keys: {key!r} is not one of {', '.join(SEARCH_KEYS)}")
    try:
        event_filter = parse_event_filter(raw.get("filter"), "filter.")
    except FilterError as e:
        raise bad_json(str(e))
    order_by = raw.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise invalid_param("order_by must be 'rank' or 'recent'")
    include_state = raw.get("include_state", False)
    if not isinstance(include_state, bool):
        raise bad_json("include_state must be a boolean")
    return RoomEventsSearch(
        search_term=term,
        keys=tuple(keys),
        event_filter=event_filter,
        order_by_rank=order_by == "rank",
        event_context=_event_context(raw.get("event_context")),
        group_by=_group_by(raw.get("groupings")),
        include_state=include_state,
    )


def _event_context(raw: Any) -> EventContextSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_json("event_context must be an object")
    limits = {}
    for name in ("before_limit", "after_limit"):
        value = raw.get(name, 5)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad_json(f"event_context.{name} must be an integer")
        if not 0 <= value <= MAX_CONTEXT:
            raise invalid_param(f"event_context.{name} must be between 0 and {MAX_CONTEXT}")
        limits[name] = value
    include_profile = raw.get("include_profile", False)
    if not isinstance(include_profile, bool):
        raise bad_json("event_context.include_profile must be a boolean")
    return EventContextSpec(limits["before_limit"], limits["after_limit"], include_profile)


def _group_by(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise bad_json("groupings must be an object")
    groups = raw.get("group_by", [])
    if not isinstance(groups, list):
        raise bad_json("groupings.group_by must be a list")
    keys: list[str] = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("key"), str):
            raise bad_json("each of groupings.group_by must be an object with a string key")
        if group["key"] not in GROUP_KEYS:
            raise invalid_param(f"groupings: cannot group by {group['key']!r} (room_id or sender)")
        if group["key"] not in keys:
            keys.append(group["key"])
    return tuple(keys)
