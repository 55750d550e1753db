"""The relationships API and the threads list.

Spec: https://spec.matrix.org/v1.19/client-server-api/#relationships-api
and https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidthreads
"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V1, requester, services
from homeserver.client.rooms import _room_id
from homeserver.errors import invalid_param
from homeserver.http import json_response, query_bool, query_int

routes = web.RouteTableDef()

# Synapse's default page sizes; the maximum keeps a response bounded.
DEFAULT_RELATIONS_LIMIT = 5
DEFAULT_THREADS_LIMIT = 5
MAX_LIMIT = 1000


async def _relations(request: web.Request, rel_type: str | None, event_type: str | None) -> web.Response:
    who = await requester(request)
    direction = request.query.get("dir", "b")
    if direction not in ("b", "f"):
        raise invalid_param("dir must be 'b' or 'f'")
    limit = query_int(request, "limit", default=DEFAULT_RELATIONS_LIMIT, minimum=0, maximum=MAX_LIMIT)
    recurse = query_bool(request, "recurse") if "recurse" in request.query else None
    result = await services(request).relations.children(
        who, _room_id(request), request.match_info["event_id"], rel_type, event_type,
        request.query.get("from"), request.query.get("to"), backwards=direction == "b",
        limit=limit, recurse=recurse,
    )
    return json_response(result)


@routes.get(V1 + "/rooms/{room_id}/relations/{event_id}")
async def relations(request: web.Request) -> web.Response:
    return await _relations(request, None, None)


@routes.get(V1 + "/rooms/{room_id}/relations/{event_id}/{rel_type}")
async def relations_of_type(request: web.Request) -> web.Response:
    return await _relations(request, request.match_info["rel_type"], None)


@routes.get(V1 + "/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}")
async def relations_of_type_and_event_type(request: web.Request) -> web.Response:
    return await _relations(request, request.match_info["rel_type"], request.match_info["event_type"])


@routes.get(V1 + "/rooms/{room_id}/threads")
async def threads(request: web.Request) -> web.Response:
    who = await requester(request)
    include = request.query.get("include", "all")
    if include not in ("all", "participated"):
        raise invalid_param("include must be 'all' or 'participated'")
    # Spec: "Must be an integer greater than zero."
    limit = query_int(request, "limit", default=DEFAULT_THREADS_LIMIT, minimum=1, maximum=MAX_LIMIT)
    result = await services(request).relations.threads(
        who, _room_id(request), include == "participated", request.query.get("from"), limit
    )
    return json_response(result)
