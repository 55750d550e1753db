"""Room tags: GET .../tags, PUT and DELETE .../tags/{tag}, for one's own account only.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-tagging
"""

from __future__ import annotations

from aiohttp import web

from homeserver.appkeys import SERVICES
from homeserver.client.base import V3, add_client_routes, requester, same_user
from homeserver.client.rooms import _room_id
from homeserver.http import json_response, read_json_object
from homeserver.services.room_tags import RoomTags

routes = web.RouteTableDef()

ROOM_TAGS = web.AppKey("room_tags", RoomTags)
TAGS = V3 + "/user/{user_id}/rooms/{room_id}/tags"


def install(app: web.Application) -> None:
    app[ROOM_TAGS] = RoomTags(app[SERVICES].account_data)
    add_client_routes(app.router, routes)


@routes.get(TAGS)
async def get_tags(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    tags = await request.app[ROOM_TAGS].get(who.user_id, _room_id(request))
    return json_response({"tags": tags})


@routes.put(TAGS + "/{tag}")
async def put_tag(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    room_id = _room_id(request)
    # Some clients send no body for a tag without order.
    content = await read_json_object(request, allow_empty=True)
    await request.app[ROOM_TAGS].put(who.user_id, room_id, request.match_info["tag"], content)
    return json_response({})


@routes.delete(TAGS + "/{tag}")
async def delete_tag(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    await request.app[ROOM_TAGS].delete(who.user_id, _room_id(request), request.match_info["tag"])
    return json_response({})
