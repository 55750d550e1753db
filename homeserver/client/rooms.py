"""Room creation and membership.

Spec: https://spec.matrix.org/v1.19/client-server-api/#rooms
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from homeserver.client.base import V3, Body, requester, services
from homeserver.errors import MatrixError, invalid_param
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.protocol import ids
from homeserver.protocol.room_versions import DEFAULT_ROOM_VERSION, get_room_version
from homeserver.services.room_creation import CreateRoomRequest

routes = web.RouteTableDef()


class StateEventBody(Body):
    type: str
    state_key: str = ""
    content: dict[str, Any]


class CreateRoomBody(Body):
    visibility: Literal["public", "private"] = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: list[str] = Field(default_factory=list)
    invite_3pid: list[dict[str, Any]] = Field(default_factory=list)
    room_version: str | None = None
    creation_content: dict[str, Any] | None = None
    initial_state: list[StateEventBody] = Field(default_factory=list)
    preset: Literal["private_chat", "public_chat", "trusted_private_chat"] | None = None
    is_direct: bool = False
    power_level_content_override: dict[str, Any] | None = None


class MembershipBody(Body):
    reason: str | None = None


class TargetBody(Body):
    user_id: str
    reason: str | None = None


@routes.post(V3 + "/createRoom")
async def create_room(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(CreateRoomBody, await read_json_object(request, allow_empty=True))
    version = DEFAULT_ROOM_VERSION
    if body.room_version is not None:
        found = get_room_version(body.room_version)
        if found is None:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {body.room_version}")
        version = found
    if body.invite_3pid:
        raise MatrixError(400, "M_UNKNOWN", "Third-party invites are not supported")
    preset = body.preset or ("public_chat" if body.visibility == "public" else "private_chat")
    room_id, _alias = await svc.room_creator.create(who.user_id, CreateRoomRequest(
        version=version,
        preset=preset,
        is_public=body.visibility == "public",
        name=body.name,
        topic=body.topic,
        alias_localpart=body.room_alias_name,
        invite=body.invite,
        is_direct=body.is_direct,
        creation_content=body.creation_content or {},
        initial_state=[s.model_dump() for s in body.initial_state],
        power_level_content_override=body.power_level_content_override,
    ))
    return json_response({"room_id": room_id})


@routes.post(V3 + "/join/{room_id_or_alias}")
async def join_by_id_or_alias(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(MembershipBody, await read_json_object(request, allow_empty=True))
    # "via" (v1.12) and its older name "server_name": servers to join a remote room through.
    via = request.query.getall("via", []) + request.query.getall("server_name", [])
    room_id, servers = await svc.membership.resolve_room_and_servers(request.match_info["room_id_or_alias"], via)
    await svc.membership.join(who.user_id, room_id, body.reason, servers)
    return json_response({"room_id": room_id})


@routes.post(V3 + "/knock/{room_id_or_alias}")
async def knock(request: web.Request) -> web.Response:
    """Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3knockroomidoralias"""
    svc = services(request)
    who = await requester(request)
    body = parse_model(MembershipBody, await read_json_object(request, allow_empty=True))
    via = request.query.getall("via", []) + request.query.getall("server_name", [])
    room_id, servers = await svc.membership.resolve_room_and_servers(request.match_info["room_id_or_alias"], via)
    await svc.membership.knock(who.user_id, room_id, body.reason, servers)
    return json_response({"room_id": room_id})


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not ids.is_valid_room_id(room_id):
        raise invalid_param("Invalid room id")
    return room_id


@routes.post(V3 + "/rooms/{room_id}/join")
async def join(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(MembershipBody, await read_json_object(request, allow_empty=True))
    room_id = _room_id(request)
    await svc.membership.join(who.user_id, room_id, body.reason)
    return json_response({"room_id": room_id})


@routes.post(V3 + "/rooms/{room_id}/leave")
async def leave(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(MembershipBody, await read_json_object(request, allow_empty=True))
    await svc.membership.leave(who.user_id, _room_id(request), body.reason)
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/forget")
async def forget(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    await svc.membership.forget(who.user_id, _room_id(request))
    return json_response({})


async def _target_action(request: web.Request, action: str) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(TargetBody, await read_json_object(request))
    room_id = _room_id(request)
    method = getattr(svc.membership, action)
    await method(who.user_id, room_id, body.user_id, body.reason)
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/invite")
async def invite(request: web.Request) -> web.Response:
    return await _target_action(request, "invite")


@routes.post(V3 + "/rooms/{room_id}/kick")
async def kick(request: web.Request) -> web.Response:
    return await _target_action(request, "kick")


@routes.post(V3 + "/rooms/{room_id}/ban")
async def ban(request: web.Request) -> web.Response:
    return await _target_action(request, "ban")


@routes.post(V3 + "/rooms/{room_id}/unban")
async def unban(request: web.Request) -> web.Response:
    return await _target_action(request, "unban")


@routes.get(V3 + "/joined_rooms")
async def joined_rooms(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response({"joined_rooms": await services(request).membership.joined_rooms(who.user_id)})
