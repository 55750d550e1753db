"""POST /refresh: a new access token for a refresh token.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3refresh
"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, Body, services
from homeserver.http import json_response, parse_model, read_json_object

routes = web.RouteTableDef()


class RefreshBody(Body):
    refresh_token: str


@routes.post(V3 + "/refresh")
@routes.post("/_matrix/client/v1/refresh")
async def refresh(request: web.Request) -> web.Response:
    # No access token is needed: the one the client holds may well have expired.
    body = parse_model(RefreshBody, await read_json_object(request))
    tokens = await services(request).refresh_tokens.refresh(body.refresh_token)
    return json_response({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_in_ms": tokens.expires_in_ms,
    })
