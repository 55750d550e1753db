"""Joins, leaves, knocks and invites that other servers ask of us, a resident server.

Spec: https://spec.matrix.org/v1.19/server-server-api/#joining-rooms (and the
sections on leaving, knocking and inviting that follow it).
The rules are in federation/resident_membership.py; this module is the HTTP.
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from homeserver.errors import forbidden, invalid_param
from homeserver.http import json_response, read_json_object
from homeserver.protocol import ids

from federation.auth import federation_origin
from federation.context import Federation
from federation.resident_membership import ResidentMembership

routes = web.RouteTableDef()

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"

RESIDENT = web.AppKey("resident_membership", ResidentMembership)


def install(app: web.Application, fed: Federation) -> None:
    app[RESIDENT] = ResidentMembership(fed)
    app.router.add_routes(routes)


def _room_and_user(request: web.Request, origin: str) -> tuple[str, str]:
    room_id = request.match_info["room_id"]
    user_id = request.match_info["user_id"]
    if not ids.is_valid_room_id(room_id):
        raise invalid_param("Invalid room id")
    if not ids.is_valid_user_id(user_id) or ids.server_name_of(user_id) != origin:
        raise forbidden("The user must belong to the requesting server")
    return room_id, user_id


async def _make_membership(request: web.Request, membership: str) -> web.Response:
    origin = await federation_origin(request)
    room_id, user_id = _room_and_user(request, origin)
    template = await request.app[RESIDENT].make_membership(
        origin, room_id, user_id, membership, request.query.getall("ver", ["1"]))
    return json_response(template)


@routes.get(V1 + "/make_join/{room_id}/{user_id}")
async def make_join(request: web.Request) -> web.Response:
    return await _make_membership(request, "join")


@routes.get(V1 + "/make_leave/{room_id}/{user_id}")
async def make_leave(request: web.Request) -> web.Response:
    return await _make_membership(request, "leave")


@routes.get(V1 + "/make_knock/{room_id}/{user_id}")
async def make_knock(request: web.Request) -> web.Response:
    return await _make_membership(request, "knock")


async def _send_membership(request: web.Request, membership: str):
    origin = await federation_origin(request)
    resident = request.app[RESIDENT]
    room_id = request.match_info["room_id"]
    version = await resident.resident_room_version(room_id, origin)
    body = await read_json_object(request)
    return await resident.send_membership(origin, version, room_id, request.match_info["event_id"], membership, body)


@routes.put(V2 + "/send_join/{room_id}/{event_id}")
async def send_join(request: web.Request) -> web.Response:
    event = await _send_membership(request, "join")
    return json_response(await request.app[RESIDENT].join_response(event))


@routes.put(V1 + "/send_join/{room_id}/{event_id}")
async def send_join_v1(request: web.Request) -> web.Response:
    response = await send_join(request)
    return web.Response(body=b"[200," + response.body + b"]", content_type="application/json")


@routes.put(V2 + "/send_leave/{room_id}/{event_id}")
async def send_leave(request: web.Request) -> web.Response:
    await _send_membership(request, "leave")
    return json_response({})


@routes.put(V1 + "/send_knock/{room_id}/{event_id}")
async def send_knock(request: web.Request) -> web.Response:
    event = await _send_membership(request, "knock")
    return json_response({"knock_room_state": await request.app[RESIDENT].knock_state(event.room_id)})


@routes.put(V2 + "/invite/{room_id}/{event_id}")
async def invite(request: web.Request) -> web.Response:
    """An invite of one of our users to a room on another server: countersign and keep it."""
    origin = await federation_origin(request)
    body = await read_json_object(request)
    event = await request.app[RESIDENT].receive_invite(
        origin, request.match_info["room_id"], unquote(request.match_info["event_id"]), body)
    return json_response({"event": event.json})
