"""Room aliases. Spec: https://spec.matrix.org/v1.19/client-server-api/#room-aliases"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, Body, requester, services
from homeserver.client.rooms import _room_id
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.protocol import ids

routes = web.RouteTableDef()


class AliasBody(Body):
    room_id: str


def _alias(request: web.Request) -> str:
    alias = request.match_info["alias"]
    if not ids.is_valid_room_alias(alias):
        raise invalid_param("Invalid room alias")
    return alias


@routes.get(V3 + "/directory/room/{alias}")
async def get_alias(request: web.Request) -> web.Response:
    svc = services(request)
    alias = _alias(request)
    if ids.parse_room_alias(alias)[1] != svc.server_name:
        # Asked of the alias's server (404 when it has none, or without federation).
        room_id, servers = await svc.membership.resolve_room_and_servers(alias)
        return json_response({"room_id": room_id, "servers": servers})
    found = await svc.rooms.get_alias(alias)
    if found is None:
        raise not_found("Room alias not found")
    return json_response({"room_id": found[0], "servers": [svc.server_name]})


@routes.put(V3 + "/directory/room/{alias}")
async def put_alias(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    alias = _alias(request)
    body = parse_model(AliasBody, await read_json_object(request))
    if ids.parse_room_alias(alias)[1] != svc.server_name:
        raise invalid_param("Aliases must be on this server")
    if not ids.is_valid_room_id(body.room_id) or not await svc.rooms.room_exists(body.room_id):
        raise not_found("Unknown room")
    membership = await svc.state.get_membership(body.room_id, who.user_id)
    if not who.is_admin and (membership is None or membership[0] != "join"):
        raise forbidden("You must be in the room to give it an alias")
    if not await svc.rooms.create_alias(alias, body.room_id, who.user_id):
        raise MatrixError(409, "M_UNKNOWN", "Room alias already exists")
    return json_response({})


@routes.delete(V3 + "/directory/room/{alias}")
async def delete_alias(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    alias = _alias(request)
    found = await svc.rooms.get_alias(alias)
    if found is None:
        raise not_found("Room alias not found")
    if found[1] != who.user_id and not who.is_admin:
        raise forbidden("Only the alias's creator or an admin may delete it")
    await svc.rooms.delete_alias(alias)
    return json_response({})


@routes.get(V3 + "/rooms/{room_id}/aliases")
async def room_aliases(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    room_id = _room_id(request)
    await svc.room_events.access(who.user_id, room_id)
    return json_response({"aliases": await svc.rooms.aliases_of_room(room_id)})
