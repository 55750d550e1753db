"""Send-to-device messaging. Spec: https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, services
from homeserver.http import json_response, read_json_object

routes = web.RouteTableDef()


@routes.put(V3 + "/sendToDevice/{event_type}/{txn_id}")
async def send_to_device(request: web.Request) -> web.Response:
    who = await requester(request)
    body = await read_json_object(request)
    await services(request).to_device.send(
        who, request.match_info["event_type"], request.match_info["txn_id"], body.get("messages")
    )
    return json_response({})
