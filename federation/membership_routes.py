"""Joins, leaves, knocks and invites that other servers ask of us, a resident server.

Spec: https://spec.matrix.org/v1.19/server-server-api/#joining-rooms (and the
sections on leaving, knocking and inviting that follow it).

make_* hands out an event template that the asking server fills in and signs;
send_* takes the signed event through the one pipeline (federation/inbound.py,
then ``EventPipeline.receive_remote``) and sends it on to the other servers of
the room. An invite of one of our users is countersigned and kept out of band.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.http import json_response, read_json_object
from homeserver.protocol import ids, signing
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.services.clock import now_ms
from homeserver.services.pipeline import EventDraft

from federation.app_keys import FEDERATION, Federation
from federation.auth import federation_origin
from federation.inbound import PduRejected

routes = web.RouteTableDef()

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"

_MEMBERSHIP_OF = {"make_join": "join", "make_leave": "leave", "make_knock": "knock"}


def _fed(request: web.Request) -> Federation:
    return request.app[FEDERATION]


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
    fed = _fed(request)
    room_id, user_id = _room_and_user(request, origin)
    await fed.check_acl(room_id, origin)
    version = await fed.services.events.get_room_version(room_id)
    if version is None or not await fed.is_resident(room_id):
        raise not_found("This server is not in that room")
    if membership in ("join", "knock"):
        supported = request.query.getall("ver", ["1"])
        if version.identifier not in supported:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                              f"The room is of version {version.identifier}, not among those given",
                              room_version=version.identifier)
    content: dict[str, Any] = {"membership": membership}
    if membership == "join":
        authoriser = await fed.services.membership.restricted.authoriser(room_id, user_id)
        if authoriser is not None:
            content["join_authorised_via_users_server"] = authoriser
    _, template, _ = await fed.services.pipeline.template(
        room_id, EventDraft("m.room.member", user_id, content, state_key=user_id))
    return json_response({"room_version": version.identifier, "event": template})


@routes.get(V1 + "/make_join/{room_id}/{user_id}")
async def make_join(request: web.Request) -> web.Response:
    return await _make_membership(request, "join")


@routes.get(V1 + "/make_leave/{room_id}/{user_id}")
async def make_leave(request: web.Request) -> web.Response:
    return await _make_membership(request, "leave")


@routes.get(V1 + "/make_knock/{room_id}/{user_id}")
async def make_knock(request: web.Request) -> web.Response:
    return await _make_membership(request, "knock")


async def _send_membership(request: web.Request, membership: str) -> tuple[Federation, Any, dict[str, Any]]:
    origin = await federation_origin(request)
    fed = _fed(request)
    room_id = request.match_info["room_id"]
    event_id = request.match_info["event_id"]
    await fed.check_acl(room_id, origin)
    version = await fed.services.events.get_room_version(room_id)
    if version is None or not await fed.is_resident(room_id):
        raise not_found("This server is not in that room")
    body = await read_json_object(request)
    try:
        event = await fed.receiver.parse_and_verify(body, version)
    except PduRejected as e:
        raise bad_json(str(e))
    if event.event_id != event_id or event.room_id != room_id:
        raise bad_json("The event id or room id does not match the path")
    if (event.type != "m.room.member" or event.membership != membership or event.state_key != event.sender
            or ids.server_name_of(event.sender) != origin):
        raise bad_json(f"Expected a {membership} of a user of {origin}")
    if membership == "join":
        authoriser = event.content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str) and ids.server_name_of(authoriser) == fed.server_name:
            # Our user authorised a restricted join: our signature is part of the event.
            signing.sign_event(event.json, version, fed.server_name, fed.services.signing_key)
    async with fed.receiver.room_lock(room_id):
        await fed.receiver.ensure_auth_events(origin, event)
        rejected = await fed.services.pipeline.receive_remote(event)
    if rejected is not None:
        raise forbidden(f"The {membership} is not allowed: {rejected}")
    stored = await fed.services.events.get_event(event.event_id)
    # The resident server tells the rest of the room (the asking server has it).
    await fed.sender.send_pdu(stored or event, [s for s in await fed.servers_in_room(room_id) if s != origin])
    return fed, stored or event, body


@routes.put(V2 + "/send_join/{room_id}/{event_id}")
async def send_join(request: web.Request) -> web.Response:
    fed, event, _ = await _send_membership(request, "join")
    state_before = await fed.services.state.get_state(event.internal.get("state_group_before"))
    state_ids = list(state_before.values())
    state_events = await fed.services.events.get_events(state_ids)
    auth_chain_ids = await fed.graph.auth_chain_ids(state_ids + [event.event_id])
    auth_events = await fed.services.events.get_events(auth_chain_ids)
    servers = await fed.servers_in_room(event.room_id)
    return json_response({
        "origin": fed.server_name,
        "state": [e.json for e in state_events.values()],
        "auth_chain": [e.json for e in auth_events.values()],
        "event": event.json,
        # omit_members (MSC3706) is accepted, but the full state is always sent.
        "members_omitted": False,
        "servers_in_room": servers,
    })


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
    fed, event, _ = await _send_membership(request, "knock")
    return json_response({"knock_room_state": await fed.stripped_state(event.room_id)})


@routes.put(V2 + "/invite/{room_id}/{event_id}")
async def invite(request: web.Request) -> web.Response:
    """An invite of one of our users to a room on another server: countersign and keep it."""
    origin = await federation_origin(request)
    fed = _fed(request)
    body = await read_json_object(request)
    version = KNOWN_ROOM_VERSIONS.get(body.get("room_version", "1"))
    if version is None:
        raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "Unsupported room version",
                          room_version=str(body.get("room_version")))
    pdu = body.get("event")
    try:
        event = await fed.receiver.parse_and_verify(pdu, version)
    except PduRejected as e:
        raise bad_json(str(e))
    if event.event_id != unquote(request.match_info["event_id"]) or event.room_id != request.match_info["room_id"]:
        raise bad_json("The event id or room id does not match the path")
    target = event.state_key
    if (event.type != "m.room.member" or event.membership != "invite" or not isinstance(target, str)
            or ids.server_name_of(target) != fed.server_name or ids.server_name_of(event.sender) != origin):
        raise bad_json("Expected an invite of one of our users by a user of the requesting server")
    user = await fed.services.users.get_user(target)
    if user is None or user.deactivated:
        raise not_found("No such user")
    await fed.check_acl(event.room_id, origin)
    signing.sign_event(event.json, version, fed.server_name, fed.services.signing_key)
    stripped = body.get("invite_room_state")
    if not isinstance(stripped, list):
        unsigned = pdu.get("unsigned") if isinstance(pdu, dict) else None
        stripped = unsigned.get("invite_room_state", []) if isinstance(unsigned, dict) else []
    stripped = [s for s in stripped if isinstance(s, dict)]
    await fed.services.rooms.ensure_room(fed.services.db.pool, event.room_id, version.identifier, None, now_ms())
    fed.services.events.remember_room_version(event.room_id, version)
    current = await fed.services.state.get_membership(event.room_id, target)
    if current is None or current[0] != "join":
        await fed.services.pipeline.store_out_of_band_membership(
            event, {"invite_room_state": stripped, "invited_via": origin})
    return json_response({"event": event.json})
