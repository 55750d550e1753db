"""Voice over IP. Spec: https://spec.matrix.org/v1.19/client-server-api/#voice-over-ip"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, services
from homeserver.http import json_response

routes = web.RouteTableDef()


@routes.get(V3 + "/voip/turnServer")
async def turn_server(request: web.Request) -> web.Response:
    """https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3voipturnserver"""
    who = await requester(request)
    return json_response(services(request).turn.credentials(who.user_id))
