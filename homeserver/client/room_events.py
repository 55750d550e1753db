"""Sending and reading a room's events and state.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-events
"""

from __future__ import annotations

import json

from aiohttp import web

from homeserver.client.base import V3, Body, requester, services
from homeserver.client.rooms import _room_id
from homeserver.errors import MatrixError, invalid_param
from homeserver.http import json_response, parse_model, query_int, read_json_object
from homeserver.protocol.filters import EventFilter, FilterError, parse_event_filter

routes = web.RouteTableDef()

MAX_TXN_ID_LENGTH = 255


class RedactBody(Body):
    reason: str | None = None


def _txn_id(request: web.Request) -> str:
    txn_id = request.match_info["txn_id"]
    if not txn_id or len(txn_id) > MAX_TXN_ID_LENGTH:
        raise invalid_param("Invalid transaction id")
    return txn_id


@routes.put(V3 + "/rooms/{room_id}/send/{event_type}/{txn_id}")
async def send_message(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    room_id = _room_id(request)
    content = await read_json_object(request, allow_empty=False)
    event = await svc.room_events.send_message(
        who, room_id, request.match_info["event_type"], content, _txn_id(request)
    )
    return json_response({"event_id": event.event_id})


@routes.get(V3 + "/rooms/{room_id}/state")
async def get_state(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response(await services(request).room_events.get_state(who, _room_id(request)))


async def _get_state_event(request: web.Request, state_key: str) -> web.Response:
    svc = services(request)
    who = await requester(request)
    event = await svc.room_events.get_state_event(
        who, _room_id(request), request.match_info["event_type"], state_key
    )
    # Serialised either way, so that a redacted state event shows its redacted content.
    client_event = (await svc.views.serialize([event]))[0]
    if request.query.get("format") == "event":
        return json_response(client_event)
    return json_response(client_event["content"])


async def _put_state_event(request: web.Request, state_key: str) -> web.Response:
    svc = services(request)
    who = await requester(request)
    content = await read_json_object(request, allow_empty=False)
    event = await svc.room_events.set_state(
        who, _room_id(request), request.match_info["event_type"], state_key, content
    )
    return json_response({"event_id": event.event_id})


@routes.get(V3 + "/rooms/{room_id}/state/{event_type}")
async def get_state_event_empty_key(request: web.Request) -> web.Response:
    return await _get_state_event(request, "")


@routes.get(V3 + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
async def get_state_event(request: web.Request) -> web.Response:
    return await _get_state_event(request, request.match_info["state_key"])


@routes.put(V3 + "/rooms/{room_id}/state/{event_type}")
async def put_state_event_empty_key(request: web.Request) -> web.Response:
    return await _put_state_event(request, "")


@routes.put(V3 + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
async def put_state_event(request: web.Request) -> web.Response:
    return await _put_state_event(request, request.match_info["state_key"])


@routes.put(V3 + "/rooms/{room_id}/redact/{event_id}/{txn_id}")
async def redact(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(RedactBody, await read_json_object(request, allow_empty=True))
    event = await svc.room_events.redact(
        who, _room_id(request), request.match_info["event_id"], body.reason, _txn_id(request)
    )
    return json_response({"event_id": event.event_id})


@routes.get(V3 + "/rooms/{room_id}/event/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response(
        await services(request).room_events.get_event(who, _room_id(request), request.match_info["event_id"])
    )


@routes.get(V3 + "/rooms/{room_id}/members")
async def members(request: web.Request) -> web.Response:
    who = await requester(request)
    membership = request.query.get("membership")
    not_membership = request.query.get("not_membership")
    valid = (None, "join", "invite", "knock", "leave", "ban")
    if membership not in valid or not_membership not in valid:
        raise invalid_param("Invalid membership filter")
    chunk = await services(request).room_events.members(
        who, _room_id(request), membership, not_membership, request.query.get("at")
    )
    return json_response({"chunk": chunk})


@routes.get(V3 + "/rooms/{room_id}/joined_members")
async def joined_members(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response({"joined": await services(request).room_events.joined_members(who, _room_id(request))})


def _filter_param(request: web.Request) -> EventFilter:
    raw = request.query.get("filter")
    if raw is None:
        return EventFilter()
    try:
        return parse_event_filter(json.loads(raw))
    except (ValueError, FilterError) as e:
        raise invalid_param(f"Invalid filter: {e}")


@routes.get(V3 + "/rooms/{room_id}/messages")
async def messages(request: web.Request) -> web.Response:
    who = await requester(request)
    direction = request.query.get("dir")
    if direction not in ("b", "f"):
        raise invalid_param("dir must be 'b' or 'f'") if direction else MatrixError(
            400, "M_MISSING_PARAM", "Missing dir")
    event_filter = _filter_param(request)
    limit = query_int(request, "limit", default=10, minimum=0, maximum=1000) or 10
    if event_filter.limit:
        limit = min(limit, event_filter.limit)
    result = await services(request).room_events.messages(
        who, _room_id(request), request.query.get("from"), request.query.get("to"),
        backwards=direction == "b", limit=limit, event_filter=event_filter,
    )
    return json_response(result)


@routes.get(V3 + "/rooms/{room_id}/context/{event_id}")
async def context(request: web.Request) -> web.Response:
    who = await requester(request)
    limit = query_int(request, "limit", default=10, minimum=0, maximum=100)
    result = await services(request).room_events.context(
        who, _room_id(request), request.match_info["event_id"], limit, _filter_param(request)
    )
    return json_response(result)
