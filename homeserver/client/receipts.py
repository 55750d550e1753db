"""Typing notifications, receipts and read markers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#typing-notifications,
https://spec.matrix.org/v1.19/client-server-api/#receipts and
https://spec.matrix.org/v1.19/client-server-api/#fully-read-markers
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from homeserver.client.base import V3, Body, requester, same_user, services
from homeserver.client.rooms import _room_id
from homeserver.errors import invalid_param
from homeserver.http import json_response, read_json_object, read_model
from homeserver.services.receipts import FULLY_READ, READ, READ_PRIVATE

routes = web.RouteTableDef()


class TypingBody(Body):
    typing: bool
    timeout: int | None = Field(default=None, ge=0)


@routes.put(V3 + "/rooms/{room_id}/typing/{user_id}")
async def put_typing(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    body = await read_model(request, TypingBody)
    await services(request).typing.set_typing(who.user_id, _room_id(request), body.typing, body.timeout)
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/receipt/{receipt_type}/{event_id}")
async def post_receipt(request: web.Request) -> web.Response:
    who = await requester(request)
    # Some clients send no body at all; the spec's only field is optional.
    body = await read_json_object(request, allow_empty=True)
    thread_id = body.get("thread_id")
    if "thread_id" in body and (not isinstance(thread_id, str) or not thread_id):
        raise invalid_param("thread_id field must be a non-empty string")
    await services(request).receipts.set_receipt(
        who.user_id, _room_id(request), request.match_info["receipt_type"], request.match_info["event_id"], thread_id,
    )
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/read_markers")
async def post_read_markers(request: web.Request) -> web.Response:
    who = await requester(request)
    body = await read_json_object(request, allow_empty=True)
    markers = {}
    for kind in (FULLY_READ, READ, READ_PRIVATE):
        event_id = body.get(kind)
        if event_id is None:
            continue
        if not isinstance(event_id, str):
            raise invalid_param(f"{kind} must be an event id")
        markers[kind] = event_id
    await services(request).receipts.set_read_markers(who.user_id, _room_id(request), markers)
    return json_response({})
