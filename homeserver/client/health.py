"""GET /health: 200 "OK" while the process serves HTTP, for container and load balancer checks.

Synapse answers the same path the same way, so tools written for it (Docker HEALTHCHECKs,
uptime monitors) work unchanged. It touches no database and needs no access token.
"""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK", content_type="text/plain")
