"""Typing notifications, receipts and read markers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#typing-notifications,
https://spec.matrix.org/v1.19/client-server-api/#receipts and
https://spec.matrix.org/v1.19/client-server-api/#fully-read-markers
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, field_validator

from homeserver.client.base import V3, Body, parse_params, requester, same_user, services
from homeserver.client.rooms import _room_id
from homeserver.http import json_response, read_json_object, read_model
from homeserver.services.receipts import FULLY_READ, READ, READ_PRIVATE

routes = web.RouteTableDef()


class TypingBody(Body):
    typing: bool
    timeout: int | None = Field(default=None, ge=0)


class ReceiptBody(Body):
    # Absent: an unthreaded receipt. Present, it must name a thread ("main" or a root's id).
    thread_id: str | None = Field(default=None, min_length=1)

    @field_validator("thread_id", mode="before")
    @classmethod
    def _present_means_a_string(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("thread_id field must be a non-empty string")
        return value


class ReadMarkersBody(Body):
    # Each marker may be absent or null (not moved).
    fully_read: str | None = Field(default=None, alias=FULLY_READ)
    read: str | None = Field(default=None, alias=READ)
    read_private: str | None = Field(default=None, alias=READ_PRIVATE)


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
    body = parse_params(ReceiptBody, await read_json_object(request, allow_empty=True))
    await services(request).receipts.set_receipt(
        who.user_id, _room_id(request), request.match_info["receipt_type"], request.match_info["event_id"],
        body.thread_id,
    )
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/read_markers")
async def post_read_markers(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_params(ReadMarkersBody, await read_json_object(request, allow_empty=True))
    markers = {kind: event_id for kind, event_id in (
        (FULLY_READ, body.fully_read), (READ, body.read), (READ_PRIVATE, body.read_private),
    ) if event_id is not None}
    await services(request).receipts.set_read_markers(who.user_id, _room_id(request), markers)
    return json_response({})
