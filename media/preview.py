"""URL previews: GET /_matrix/client/v1/media/preview_url (and the legacy /_matrix/media/v3 path).

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediapreview_url

Off by default: a preview makes the server fetch whatever a user names, which
tells the site who is talking about it and reaches into the server's network.
Disabled, the endpoint answers as Synapse does: 404 M_UNRECOGNIZED to a
signed-in user. Enabled, media/previewer.py fetches the page safely, parses its
OpenGraph tags and keeps the result; this module is the route.
"""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web
from yarl import URL

from homeserver.appkeys import SERVICES
from homeserver.errors import MatrixError, invalid_param, missing_param
from homeserver.http import json_response, query_int
from homeserver.request_context import requester
from homeserver.services.clock import now_ms
from media.app import build_previewer
from media.previewer import UrlPreviewer
from media.repository import MediaRepository

PREVIEWER = web.AppKey("url_previewer", UrlPreviewer)

routes = web.RouteTableDef()


@routes.get("/_matrix/client/v1/media/preview_url")
@routes.get("/_matrix/media/{version:(?:v3|r0|v1)}/preview_url")
async def preview_url(request: web.Request) -> web.Response:
    who = await requester(request)
    previewer = request.app.get(PREVIEWER)
    if previewer is None:
        # Disabled: the endpoint does not exist, as Synapse answers.
        raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
    url = request.query.get("url")
    if not url:
        raise missing_param("Missing parameter: url")
    try:
        parsed = URL(url)
    except ValueError:
        raise invalid_param("url is not a valid URL")
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise invalid_param("Only http and https URLs can be previewed")
    ts = query_int(request, "ts", default=now_ms())
    return json_response(await previewer.preview(url, who.user_id, ts))


def install(app: web.Application, media: MediaRepository) -> None:
    """Mounts the preview routes; builds the previewer only when the admin enabled it."""
    previewer = build_previewer(app[SERVICES], media)
    if previewer is not None:
        app[PREVIEWER] = previewer

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            async with previewer.running():
                yield

        app.cleanup_ctx.append(lifecycle)
    app.router.add_routes(routes)

