"""Device management. Spec: https://spec.matrix.org/v1.19/client-server-api/#device-management"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from homeserver.client.base import V3, Body, requester, services
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.services.uia import PASSWORD

if TYPE_CHECKING:
    from homeserver.storage.devices import Device

routes = web.RouteTableDef()


class RenameBody(Body):
    display_name: str | None = None


class DeleteBody(Body):
    auth: dict[str, Any] | None = None


class DeleteManyBody(Body):
    devices: list[str]
    auth: dict[str, Any] | None = None


def _device_json(device: Device) -> dict[str, Any]:
    # The spec leaves unknown fields absent, but Synapse sends null and clients
    # such as matrix-nio require all four keys, so unknown ones are null.
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }


@routes.get(V3 + "/devices")
async def list_devices(request: web.Request) -> web.Response:
    who = await requester(request)
    devices = await services(request).accounts.list_devices(who.user_id)
    return json_response({"devices": [_device_json(d) for d in devices]})


@routes.get(V3 + "/devices/{device_id}")
async def get_device(request: web.Request) -> web.Response:
    who = await requester(request)
    device = await services(request).accounts.get_device(who.user_id, request.match_info["device_id"])
    return json_response(_device_json(device))


@routes.put(V3 + "/devices/{device_id}")
async def rename_device(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(RenameBody, await read_json_object(request, allow_empty=True))
    accounts = services(request).accounts
    device_id = request.match_info["device_id"]
    if "display_name" in body.model_fields_set:
        await accounts.rename_device(who.user_id, device_id, body.display_name)
    else:
        # Without display_name the name is unchanged; an unknown device is still a 404.
        await accounts.get_device(who.user_id, device_id)
    return json_response({})


@routes.delete(V3 + "/devices/{device_id}")
async def delete_device(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    device_id = request.match_info["device_id"]
    # No 404 for an unknown device: the spec answers 200 for one "removed previously".
    body = parse_model(DeleteBody, await read_json_object(request, allow_empty=True))
    await svc.uia.authenticate(body.auth, [[PASSWORD]], f"delete_device:{who.user_id}", expected_user=who.user_id)
    await svc.accounts.delete_devices(who.user_id, [device_id])
    return json_response({})


@routes.post(V3 + "/delete_devices")
async def delete_devices(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(DeleteManyBody, await read_json_object(request))
    await svc.uia.authenticate(body.auth, [[PASSWORD]], f"delete_device:{who.user_id}", expected_user=who.user_id)
    await svc.accounts.delete_devices(who.user_id, body.devices)
    return json_response({})
