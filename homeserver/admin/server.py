"""The server's version (Synapse docs: docs/admin_api/version_api.md); no token needed,
synapse-admin reads it before logging in."""

from __future__ import annotations

from aiohttp import web

from homeserver import __version__
from homeserver.admin.base import V1
from homeserver.http import json_response

routes = web.RouteTableDef()


@routes.get(V1 + "/server_version")
async def server_version(request: web.Request) -> web.Response:
    return json_response({"server_version": f"homeserver {__version__}"})
