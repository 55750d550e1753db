"""The rooms the requester shares with another user (MSC2666, as Synapse serves it).

MSC2666: https://github.com/matrix-org/matrix-spec-proposals/pull/2666
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.client.base import V3, requester, services
from homeserver.errors import MatrixError, invalid_param
from homeserver.http import json_response
from homeserver.protocol import ids

routes = web.RouteTableDef()


async def _mutual_rooms(request: web.Request, other: str | None) -> web.Response:
    who = await requester(request)
    if other is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter user_id")
    if not ids.is_valid_user_id(other):
        raise invalid_param("Invalid user id")
    if other == who.user_id:
        raise invalid_param("You cannot ask for the rooms you share with yourself")
    after = request.query.get("from")
    if after is not None and not ids.is_valid_room_id(after):
        raise invalid_param("Invalid from token")
    joined, next_batch = await services(request).room_summary.mutual_rooms(who.user_id, other, after)
    body: dict[str, Any] = {"joined": joined}
    if next_batch is not None:
        body["next_batch"] = next_batch
    return json_response(body)


@routes.get("/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms")
async def mutual_rooms_unstable(request: web.Request) -> web.Response:
    return await _mutual_rooms(request, request.query.get("user_id"))


@routes.get(V3 + "/user/{user_id}/mutual_rooms")
async def mutual_rooms(request: web.Request) -> web.Response:
    return await _mutual_rooms(request, request.match_info["user_id"])
