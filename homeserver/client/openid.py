"""POST /user/{userId}/openid/request_token: a token that proves the user's identity to a third party.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3useruseridopenidrequest_token
Element Call and widgets sign in to their services with it.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, same_user, services
from homeserver.http import json_response, read_json_object
from homeserver.services.openid import OpenIdService

routes = web.RouteTableDef()


def openid_service(request: web.Request) -> OpenIdService:
    return services(request).openid


@routes.post(V3 + "/user/{user_id}/openid/request_token")
async def request_token(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    # "An empty object. Reserved for future expansion": it must be JSON, its keys are ignored.
    await read_json_object(request, allow_empty=True)
    return json_response(await openid_service(request).request_token(who.user_id))
