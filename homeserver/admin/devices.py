"""A user's devices, as server admins manage them (Synapse docs: user_admin_api.md, "User devices")."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.base import V2, AdminBody, admin_services, body_of, require_admin
from homeserver.http import json_response, parse_model

routes = web.RouteTableDef()


class RenameBody(AdminBody):
    display_name: str | None = None


class DeleteDevicesBody(AdminBody):
    devices: list[str]


@routes.get(V2 + "/users/{user_id}/devices")
async def list_devices(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).users.devices(request.match_info["user_id"]))


@routes.get(V2 + "/users/{user_id}/devices/{device_id}")
async def get_device(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).users.device(
        request.match_info["user_id"], request.match_info["device_id"]))


@routes.put(V2 + "/users/{user_id}/devices/{device_id}")
async def rename_device(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(RenameBody, await body_of(request))
    await admin_services(request).users.rename_device(
        who, request.match_info["user_id"], request.match_info["device_id"], body.display_name)
    return json_response({})


@routes.delete(V2 + "/users/{user_id}/devices/{device_id}")
async def delete_device(request: web.Request) -> web.Response:
    who = await require_admin(request)
    await admin_services(request).users.delete_devices(
        who, request.match_info["user_id"], [request.match_info["device_id"]])
    return json_response({})


@routes.post(V2 + "/users/{user_id}/delete_devices")
async def delete_devices(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(DeleteDevicesBody, await body_of(request))
    await admin_services(request).users.delete_devices(who, request.match_info["user_id"], body.devices)
    return json_response({})
