"""The server's version (Synapse docs: docs/admin_api/version_api.md; no token needed,
synapse-admin reads it before logging in) and server notices."""

from __future__ import annotations

from aiohttp import web

from homeserver import __version__
from homeserver.admin.base import V1, admin_services, body_of, require_admin
from homeserver.errors import missing_param
from homeserver.http import json_response

routes = web.RouteTableDef()


@routes.get(V1 + "/server_version")
async def server_version(request: web.Request) -> web.Response:
    return json_response({"server_version": f"homeserver {__version__}"})


@routes.post(V1 + "/send_server_notice")
async def send_server_notice(request: web.Request) -> web.Response:
    """Synapse docs: docs/admin_api/server_notices.md; needs server_notices.enabled."""
    who = await require_admin(request)
    body = await body_of(request)
    for key in ("user_id", "content"):
        if key not in body:
            raise missing_param(f"Missing parameter: {key}")
    event_id = await admin_services(request).server_notices.send(
        who, body["user_id"], body["content"], body.get("type", "m.room.message"), body.get("state_key"))
    return json_response({"event_id": event_id})
