"""GET /v1/rooms/{roomId}/hierarchy: a page of a space's tree of rooms.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidhierarchy
"""

from __future__ import annotations

from aiohttp import web

from homeserver.appkeys import SERVICES
from homeserver.client.base import V1, add_client_routes, requester
from homeserver.client.rooms import _room_id
from homeserver.errors import invalid_param
from homeserver.http import json_response, query_bool, query_int
from homeserver.protocol import ids
from homeserver.services.hierarchy import HIERARCHY

routes = web.RouteTableDef()


def install(app: web.Application) -> None:
    """The one HierarchyService of the app (federation/app.py gives it its remote hook)."""
    app[HIERARCHY] = app[SERVICES].hierarchy
    add_client_routes(app.router, routes)


def _via(request: web.Request) -> list[str]:
    # Not in the spec yet: MSC4235 lets a client name the servers of a room we are not in.
    via = request.query.getall("via", []) + request.query.getall("org.matrix.msc4235.via", [])
    for server in via:
        if not ids.is_valid_server_name(server):
            raise invalid_param("via must name servers")
    return via


@routes.get(V1 + "/rooms/{room_id}/hierarchy")
async def get_hierarchy(request: web.Request) -> web.Response:
    who = await requester(request)
    room_id = _room_id(request)
    limit = query_int(request, "limit", minimum=1)
    max_depth = query_int(request, "max_depth", minimum=0)
    answer = await request.app[HIERARCHY].hierarchy(
        who.user_id, room_id, suggested_only=query_bool(request, "suggested_only"), max_depth=max_depth,
        limit=limit, from_token=request.query.get("from"), via=_via(request),
    )
    return json_response(answer)
