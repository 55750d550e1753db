"""POST /rooms/{roomId}/upgrade.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3roomsroomidupgrade
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from homeserver.client.base import V3, Body, requester, services
from homeserver.errors import MatrixError, invalid_param
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.protocol import ids
from homeserver.protocol.room_versions import get_room_version

routes = web.RouteTableDef()


class UpgradeBody(Body):
    new_version: str
    # MSC4289 (room version 12): further creators of the replacement room.
    additional_creators: list[str] = Field(default_factory=list)


@routes.post(V3 + "/rooms/{room_id}/upgrade")
async def upgrade(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    room_id = request.match_info["room_id"]
    if not ids.is_valid_room_id(room_id):
        raise invalid_param("Invalid room id")
    body = parse_model(UpgradeBody, await read_json_object(request))
    version = get_room_version(body.new_version)
    if version is None:
        raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {body.new_version}")
    for user_id in body.additional_creators:
        if not ids.is_valid_user_id(user_id):
            raise invalid_param(f"Invalid user id in additional_creators: {user_id}")
    new_room_id = await svc.room_upgrader.upgrade(who.user_id, room_id, version, body.additional_creators)
    return json_response({"replacement_room": new_room_id})
