"""Profiles. Spec: https://spec.matrix.org/v1.19/client-server-api/#profiles"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, same_user, services
from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.http import json_response, read_json_object
from homeserver.protocol import ids

routes = web.RouteTableDef()


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not ids.is_valid_user_id(user_id):
        raise invalid_param("Invalid user id")
    return user_id


@routes.get(V3 + "/profile/{user_id}")
async def get_profile(request: web.Request) -> web.Response:
    # The spec asks no authentication for profile lookups.
    return json_response(await services(request).profiles.get(_user_id(request)))


@routes.get(V3 + "/profile/{user_id}/{field}")
async def get_profile_field(request: web.Request) -> web.Response:
    profile = await services(request).profiles.get(_user_id(request))
    field = request.match_info["field"]
    if field not in profile:
        raise not_found("Profile field not set")
    return json_response({field: profile[field]})


@routes.put(V3 + "/profile/{user_id}/{field}")
async def set_profile_field(request: web.Request) -> web.Response:
    who = await requester(request)
    user_id = _user_id(request)
    same_user(who, user_id)
    field = request.match_info["field"]
    body = await read_json_object(request)
    if field not in body:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing key {field} in body")
    await services(request).profiles.set_field(user_id, field, body[field])
    return json_response({})


@routes.delete(V3 + "/profile/{user_id}/{field}")
async def delete_profile_field(request: web.Request) -> web.Response:
    who = await requester(request)
    user_id = _user_id(request)
    same_user(who, user_id)
    await services(request).profiles.set_field(user_id, request.match_info["field"], None)
    return json_response({})
