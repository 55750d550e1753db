"""Users: list, query, create or modify, deactivate, reset password, admin status, joined
rooms, pushers. Synapse docs: docs/admin_api/user_admin_api.md. Admins only.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.base import V1, V2, AdminBody, admin_services, body_of, descending, page, query_bool, \
    query_choice, require_admin
from homeserver.http import json_response, parse_model
from homeserver.services.admin_users import USER_ORDER_BY, UserChanges, UserQuery

routes = web.RouteTableDef()


class UserBody(AdminBody):
    password: str | None = None
    logout_devices: bool = True
    displayname: str | None = None
    avatar_url: str | None = None
    admin: bool | None = None
    deactivated: bool | None = None
    locked: bool | None = None
    user_type: str | None = None


class DeactivateBody(AdminBody):
    erase: bool = False


class ResetPasswordBody(AdminBody):
    new_password: str
    logout_devices: bool = True


class AdminStatusBody(AdminBody):
    admin: bool


@routes.get(V2 + "/users")
async def list_users(request: web.Request) -> web.Response:
    await require_admin(request)
    offset, limit = page(request)
    # Checked like Synapse's, then moot: there are no guest accounts to include or leave out.
    query_bool(request, "guests")
    query = UserQuery(
        offset=offset, limit=limit,
        user_id_contains=request.query.get("user_id") or None,
        name_contains=request.query.get("name") or None,
        include_deactivated=bool(query_bool(request, "deactivated")),
        include_locked=bool(query_bool(request, "locked")),
        admins=query_bool(request, "admins"),
        suspended=query_bool(request, "suspended"),
        order_by=query_choice(request, "order_by", USER_ORDER_BY, "name"),
        descending=descending(request),
    )
    return json_response(await admin_services(request).users.list_users(query))


@routes.get(V2 + "/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).users.get_user(request.match_info["user_id"]))


@routes.put(V2 + "/users/{user_id}")
async def put_user(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(UserBody, await body_of(request))
    changes = UserChanges(
        password=body.password, logout_devices=body.logout_devices, displayname=body.displayname,
        avatar_url=body.avatar_url, admin=body.admin, deactivated=body.deactivated, locked=body.locked,
        set_user_type="user_type" in body.model_fields_set, user_type=body.user_type,
    )
    user, created = await admin_services(request).users.create_or_modify(who, request.match_info["user_id"], changes)
    return json_response(user, status=201 if created else 200)


@routes.post(V1 + "/deactivate/{user_id}")
async def deactivate(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(DeactivateBody, await body_of(request))
    await admin_services(request).users.deactivate(who, request.match_info["user_id"], body.erase)
    return json_response({"id_server_unbind_result": "success"})


@routes.post(V1 + "/reset_password/{user_id}")
async def reset_password(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(ResetPasswordBody, await body_of(request))
    await admin_services(request).users.reset_password(
        who, request.match_info["user_id"], body.new_password, body.logout_devices)
    return json_response({})


@routes.get(V1 + "/users/{user_id}/admin")
async def get_admin(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response({"admin": await admin_services(request).users.is_admin(request.match_info["user_id"])})


@routes.put(V1 + "/users/{user_id}/admin")
async def put_admin(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(AdminStatusBody, await body_of(request))
    await admin_services(request).users.set_admin(who, request.match_info["user_id"], body.admin)
    return json_response({})


@routes.get(V1 + "/users/{user_id}/joined_rooms")
async def joined_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).users.joined_rooms(request.match_info["user_id"]))


@routes.get(V1 + "/users/{user_id}/memberships")
async def memberships(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).users.memberships(request.match_info["user_id"]))


@routes.get(V1 + "/users/{user_id}/pushers")
async def pushers(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).users.pushers_of(request.match_info["user_id"]))
