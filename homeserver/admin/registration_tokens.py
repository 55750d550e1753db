"""Registration tokens: list, create, read, update, delete.
Synapse docs: docs/admin_api/registration_tokens.md. Admins only.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.base import V1, admin_services, body_of, query_bool, require_admin
from homeserver.errors import invalid_param
from homeserver.http import json_response
from homeserver.services.admin_registration_tokens import UNSET

routes = web.RouteTableDef()
PREFIX = V1 + "/registration_tokens"


@routes.get(PREFIX)
async def list_tokens(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).registration_tokens.list(query_bool(request, "valid")))


@routes.post(PREFIX + "/new")
async def new_token(request: web.Request) -> web.Response:
    who = await require_admin(request)
    # Fields are checked one by one as Synapse does (null means "no limit"), so no model here.
    body = await body_of(request)
    token = body.get("token")
    if token is not None and not isinstance(token, str):
        raise invalid_param("token must be a string")
    created = await admin_services(request).registration_tokens.create(
        who, token, body.get("uses_allowed"), body.get("expiry_time"), body.get("length"))
    return json_response(created)


@routes.get(PREFIX + "/{token}")
async def get_token(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).registration_tokens.get(request.match_info["token"]))


@routes.put(PREFIX + "/{token}")
async def update_token(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = await body_of(request)
    updated = await admin_services(request).registration_tokens.update(
        who, request.match_info["token"], body.get("uses_allowed", UNSET), body.get("expiry_time", UNSET))
    return json_response(updated)


@routes.delete(PREFIX + "/{token}")
async def delete_token(request: web.Request) -> web.Response:
    who = await require_admin(request)
    await admin_services(request).registration_tokens.delete(who, request.match_info["token"])
    return json_response({})
