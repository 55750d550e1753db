"""Room previews (MSC3266 room summary), the event at a time, and the unsupported
legacy /initialSync.

MSC3266: https://github.com/matrix-org/matrix-spec-proposals/pull/3266
Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidtimestamp_to_event
"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V1, V3, access_token_of, requester, services
from homeserver.errors import MatrixError, invalid_param
from homeserver.http import json_response, query_int
from homeserver.protocol import ids

routes = web.RouteTableDef()

UNSTABLE_SUMMARY = "/_matrix/client/unstable/im.nheko.summary"


async def _summary(request: web.Request) -> web.Response:
    # Previews work without an account too (MSC3266): then only rooms open to anyone.
    user_id = (await requester(request)).user_id if access_token_of(request) is not None else None
    via = request.query.getall("via", []) + request.query.getall("server_name", [])
    summary = await services(request).room_summary.summary(user_id, request.match_info["room"], via)
    return json_response(summary)


# The unstable path has been served both with and without "/rooms" (Synapse serves both).
routes.get(V1 + "/room_summary/{room}")(_summary)
routes.get(UNSTABLE_SUMMARY + "/summary/{room}")(_summary)
routes.get(UNSTABLE_SUMMARY + "/rooms/{room}/summary")(_summary)


@routes.get(V1 + "/rooms/{room_id}/timestamp_to_event")
async def timestamp_to_event(request: web.Request) -> web.Response:
    who = await requester(request)
    room_id = request.match_info["room_id"]
    if not ids.is_valid_room_id(room_id):
        raise invalid_param("Invalid room id")
    if "ts" not in request.query:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter ts")
    ts = query_int(request, "ts")
    direction = request.query.get("dir")
    if direction is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter dir")
    if direction not in ("f", "b"):
        raise invalid_param("dir must be 'f' or 'b'")
    assert ts is not None
    found = await services(request).room_summary.event_at_timestamp(who.user_id, room_id, ts, direction == "f")
    return json_response(found)


async def _initial_sync(request: web.Request) -> web.Response:
    # Deprecated by the spec long ago and served by few servers: clients use /sync instead.
    raise MatrixError(404, "M_UNRECOGNIZED",
                      "initialSync is deprecated and not supported by this server; use /sync")


routes.get(V3 + "/rooms/{room_id}/initialSync")(_initial_sync)
routes.get(V3 + "/initialSync")(_initial_sync)
