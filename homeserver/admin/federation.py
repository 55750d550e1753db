"""Federation destinations: list, details, shared rooms, reset of a backoff.
Synapse docs: docs/usage/administration/admin_api/federation.md. Admins only.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.base import V1, admin_services, descending, page, query_choice, require_admin
from homeserver.http import json_response
from homeserver.services.admin_federation import DESTINATION_ORDER_BY

routes = web.RouteTableDef()
PREFIX = V1 + "/federation/destinations"


@routes.get(PREFIX)
async def list_destinations(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit = page(request)
    order_by = query_choice(request, "order_by", DESTINATION_ORDER_BY, "destination")
    search = request.query.get("destination") or None
    listed = await admin_services(request).federation.list(start, limit, order_by, descending(request), search)
    return json_response(listed)


@routes.get(PREFIX + "/{destination}")
async def get_destination(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).federation.get(request.match_info["destination"]))


@routes.get(PREFIX + "/{destination}/rooms")
async def destination_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit = page(request)
    rooms = await admin_services(request).federation.rooms(
        request.match_info["destination"], start, limit, descending(request))
    return json_response(rooms)


@routes.post(PREFIX + "/{destination}/reset_connection")
async def reset_connection(request: web.Request) -> web.Response:
    who = await require_admin(request)
    await admin_services(request).federation.reset_connection(who, request.match_info["destination"])
    return json_response({})
