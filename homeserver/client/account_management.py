"""Account deactivation and the (empty) third-party identifier lists Element's settings ask for.

Spec: https://spec.matrix.org/v1.19/client-server-api/#account-registration-and-management
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.client.base import V3, Body, requester, services
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.services.uia import PASSWORD

routes = web.RouteTableDef()


class DeactivateBody(Body):
    auth: dict[str, Any] | None = None
    erase: bool = False
    id_server: str | None = None


@routes.post(V3 + "/account/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(DeactivateBody, await read_json_object(request, allow_empty=True))
    await svc.uia.authenticate(body.auth, [[PASSWORD]], f"deactivate:{who.user_id}", expected_user=who.user_id)
    await svc.deactivation.deactivate(who.user_id, body.erase)
    # No 3PIDs are ever bound here, so there is nothing an identity server must forget.
    return json_response({"id_server_unbind_result": "success"})


@routes.get(V3 + "/account/3pid")
async def third_party_ids(request: web.Request) -> web.Response:
    # E-mail addresses and phone numbers are not supported; the list is always empty.
    await requester(request)
    return json_response({"threepids": []})


@routes.get(V3 + "/thirdparty/protocols")
async def third_party_protocols(request: web.Request) -> web.Response:
    # No bridges (application services) are supported.
    await requester(request)
    return json_response({})
