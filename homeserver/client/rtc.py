"""MatrixRTC (Element Call) transport discovery, MSC4143.

GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports lists the LiveKit
focus of `matrix_rtc.livekit_service_url`; /.well-known/matrix/client carries the
same list as org.matrix.msc4143.rtc_foci (versions.py) for older Element Call.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import requester, services
from homeserver.http import json_response

routes = web.RouteTableDef()


@routes.get("/_matrix/client/unstable/org.matrix.msc4143/rtc/transports")
@routes.get("/_matrix/client/v1/rtc/transports")
async def rtc_transports(request: web.Request) -> web.Response:
    await requester(request)
    return json_response({"rtc_transports": services(request).config.matrix_rtc.foci})
