"""Client config (account data). Spec: https://spec.matrix.org/v1.19/client-server-api/#client-config"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, same_user, services
from homeserver.client.rooms import _room_id
from homeserver.errors import MatrixError, not_found
from homeserver.http import json_response, read_json_object

routes = web.RouteTableDef()

# Written by the server only; the spec forbids clients to set these.
SERVER_MANAGED_TYPES = ("m.fully_read", "m.push_rules")


def _type(request: web.Request) -> str:
    data_type = request.match_info["type"]
    if len(data_type.encode()) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "Type is too long")
    return data_type


async def _put(request: web.Request, room_id: str | None) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    data_type = _type(request)
    if data_type in SERVER_MANAGED_TYPES:
        raise MatrixError(405, "M_BAD_JSON", f"{data_type} cannot be set here")
    content = await read_json_object(request)
    await services(request).account_data.put(who.user_id, room_id, data_type, content)
    return json_response({})


async def _get(request: web.Request, room_id: str | None) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    content = await services(request).account_data.get(who.user_id, room_id, _type(request))
    if content is None:
        raise not_found("Account data not found")
    return json_response(content)


@routes.put(V3 + "/user/{user_id}/account_data/{type}")
async def put_global(request: web.Request) -> web.Response:
    return await _put(request, None)


@routes.get(V3 + "/user/{user_id}/account_data/{type}")
async def get_global(request: web.Request) -> web.Response:
    return await _get(request, None)


@routes.put(V3 + "/user/{user_id}/rooms/{room_id}/account_data/{type}")
async def put_room(request: web.Request) -> web.Response:
    return await _put(request, _room_id(request))


@routes.get(V3 + "/user/{user_id}/rooms/{room_id}/account_data/{type}")
async def get_room(request: web.Request) -> web.Response:
    return await _get(request, _room_id(request))
