"""GET /_matrix/federation/v1/openid/userinfo: a third party exchanges an OpenID token for its user id.

Spec: https://spec.matrix.org/v1.19/server-server-api/#openid

Not signed with X-Matrix: the callers are services (LiveKit's JWT service,
integration managers), not servers, and the token is the authentication.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.appkeys import SERVICES
from homeserver.http import json_response

routes = web.RouteTableDef()


@routes.get("/_matrix/federation/v1/openid/userinfo")
async def userinfo(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICES].openid.userinfo(request.query.get("access_token")))
