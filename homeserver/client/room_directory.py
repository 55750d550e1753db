"""The published room directory. Spec: https://spec.matrix.org/v1.19/client-server-api/#published-room-directory"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, Body, requester, services
from homeserver.client.rooms import _room_id
from homeserver.errors import invalid_param
from homeserver.http import json_response, query_int, read_model
from homeserver.protocol import ids
from homeserver.services.room_directory import DirectoryRequest

routes = web.RouteTableDef()


class VisibilityBody(Body):
    visibility: str = "public"


class DirectoryFilter(Body):
    generic_search_term: str | None = None
    room_types: list[str | None] | None = None


class PublicRoomsBody(Body):
    limit: int | None = None
    since: str | None = None
    filter: DirectoryFilter | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


def _check_server(request: web.Request) -> None:
    """Only our own directory can be listed: this server does not federate (yet)."""
    server = request.query.get("server")
    if server is None or server == services(request).server_name:
        return
    if not ids.is_valid_server_name(server):
        raise invalid_param("Invalid server name")
    raise invalid_param(f"Cannot list the rooms of {server}: this server does not federate")


@routes.get(V3 + "/directory/list/room/{room_id}")
async def get_visibility(request: web.Request) -> web.Response:
    visibility = await services(request).room_directory.visibility(_room_id(request))
    return json_response({"visibility": visibility})


@routes.put(V3 + "/directory/list/room/{room_id}")
async def put_visibility(request: web.Request) -> web.Response:
    who = await requester(request)
    room_id = _room_id(request)
    body = await read_model(request, VisibilityBody)
    await services(request).room_directory.set_visibility(who, room_id, body.visibility)
    return json_response({})


@routes.get(V3 + "/publicRooms")
async def get_public_rooms(request: web.Request) -> web.Response:
    # No access token needed (the spec gives this endpoint no security).
    _check_server(request)
    directory_request = DirectoryRequest(limit=query_int(request, "limit"), since=request.query.get("since"))
    return json_response(await services(request).room_directory.list(directory_request))


@routes.post(V3 + "/publicRooms")
async def post_public_rooms(request: web.Request) -> web.Response:
    await requester(request)
    _check_server(request)
    body = await read_model(request, PublicRoomsBody, allow_empty=True)
    search = body.filter.generic_search_term if body.filter else None
    room_types = body.filter.room_types if body.filter else None
    directory_request = DirectoryRequest(
        limit=body.limit, since=body.since, search_term=search, room_types=room_types,
        third_party_instance_id=body.third_party_instance_id, include_all_networks=body.include_all_networks,
    )
    return json_response(await services(request).room_directory.list(directory_request))
