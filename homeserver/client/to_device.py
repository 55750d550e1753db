"""Send-to-device messaging. Spec: https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.client.base import V3, Body, parse_params, requester, services
from homeserver.http import json_response, read_json_object

routes = web.RouteTableDef()


class ToDeviceBody(Body):
    # user id -> device id (or "*") -> content. Null or absent: M_MISSING_PARAM, from the service.
    messages: dict[str, dict[str, dict[str, Any]]] | None = None


@routes.put(V3 + "/sendToDevice/{event_type}/{txn_id}")
async def send_to_device(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_params(ToDeviceBody, await read_json_object(request))
    await services(request).to_device.send(
        who, request.match_info["event_type"], request.match_info["txn_id"], body.messages
    )
    return json_response({})
