"""Room aliases. Spec: https://spec.matrix.org/v1.19/client-server-api/#room-aliases"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, Body, requester, services
from homeserver.client.rooms import _room_id
from homeserver.errors import invalid_param
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
    if not svc.room_aliases.is_local(alias):
        # Asked of the alias's server (404 when it has none, or without federation).
        room_id, servers = await svc.membership.resolve_room_and_servers(alias)
        return json_response({"room_id": room_id, "servers": servers})
    return json_response({"room_id": await svc.room_aliases.room_of(alias), "servers": [svc.server_name]})


@routes.put(V3 + "/directory/room/{alias}")
async def put_alias(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    alias = _alias(request)
    body = parse_model(AliasBody, await read_json_object(request))
    await svc.room_aliases.create(who, alias, body.room_id)
    return json_response({})


@routes.delete(V3 + "/directory/room/{alias}")
async def delete_alias(request: web.Request) -> web.Response:
    who = await requester(request)
    await services(request).room_aliases.delete(who, _alias(request))
    return json_response({})


@routes.get(V3 + "/rooms/{room_id}/aliases")
async def room_aliases(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    room_id = _room_id(request)
    await svc.room_events.access(who.user_id, room_id)
    return json_response({"aliases": await svc.room_aliases.aliases_of_room(room_id)})
