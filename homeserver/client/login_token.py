"""POST /login/get_token: a single-use m.login.token to sign in a new device (MSC3882, spec v1.7).

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv1loginget_token
The login itself is in account.py (type m.login.token).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.client.base import V1, Body, requester, services
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.services.uia import PASSWORD

routes = web.RouteTableDef()


class GetTokenBody(Body):
    auth: dict[str, Any] | None = None


@routes.post(V1 + "/login/get_token")
@routes.post("/_matrix/client/unstable/org.matrix.msc3882/login/get_token")
async def get_login_token(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(GetTokenBody, await read_json_object(request, allow_empty=True))
    # Always behind user-interactive auth: a stolen access token alone must not mint new devices.
    await svc.uia.authenticate(body.auth, [[PASSWORD]], f"get_login_token:{who.user_id}",
                               expected_user=who.user_id)
    token, lifetime_ms = await svc.login_tokens.issue(who.user_id)
    return json_response({"login_token": token, "expires_in_ms": lifetime_ms})
