"""The app factory: wires config, pool, services and every route module into one aiohttp app."""

from __future__ import annotations

from aiohttp import web

from homeserver.appkeys import SERVICES
from homeserver.client import (
    account, account_data, devices, directory, profile, room_events, rooms, sync, versions,
)
from homeserver.errors import MatrixError
from homeserver.http import error_response, matrix_middleware
from homeserver.services.container import Services
from media import preview as media_preview
from media.app import setup_media

CLIENT_ROUTE_MODULES = (versions, account, devices, profile, rooms, room_events, directory, sync, account_data)


def create_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[matrix_middleware],
        client_max_size=services.config.limits.max_request_body_bytes,
    )
    app[SERVICES] = services
    for module in CLIENT_ROUTE_MODULES:
        app.router.add_routes(module.routes)
    repository = setup_media(app, services)
    media_preview.install(app, repository)
    app.router.add_route("*", "/{tail:.*}", _unrecognized)
    return app


async def _unrecognized(request: web.Request) -> web.Response:
    # Unknown endpoints answer M_UNRECOGNIZED, as the spec asks, with CORS headers.
    return error_response(MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request"))
