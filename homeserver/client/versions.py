"""Server discovery and capabilities: /versions, /.well-known, /capabilities."""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, services
from homeserver.http import json_response
from homeserver.protocol.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS

routes = web.RouteTableDef()

SUPPORTED_VERSIONS = [
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19",
]


@routes.get("/_matrix/client/versions")
async def versions(request: web.Request) -> web.Response:
    return json_response({"versions": SUPPORTED_VERSIONS, "unstable_features": {
        # MSC2666 mutual rooms and MSC3266 room summaries (client/mutual_rooms.py, room_summary.py).
        "uk.half-shot.msc2666.query_mutual_rooms": True,
        "im.nheko.summary": True,
        # Simplified sliding sync (MSC4186, client/sliding_sync.py): Element X looks for this flag.
        "org.matrix.simplified_msc3575": True,
    }})


@routes.get("/.well-known/matrix/client")
async def well_known_client(request: web.Request) -> web.Response:
    config = services(request).config
    base_url = config.client_base_url
    if not base_url:
        # Said to whoever looks, so that an admin trying it in a browser knows the fix.
        return json_response({
            "errcode": "M_NOT_FOUND",
            "error": "No client base URL configured: set public_baseurl in the server's configuration",
        }, 404)
    body = {"m.homeserver": {"base_url": base_url}}
    if config.matrix_rtc.foci:
        # MSC4143: where Element Call finds its LiveKit focus (also at /rtc/transports, rtc.py).
        body["org.matrix.msc4143.rtc_foci"] = config.matrix_rtc.foci
    return json_response(body)


@routes.get("/.well-known/matrix/server")
async def well_known_server(request: web.Request) -> web.Response:
    config = services(request).config
    if not config.well_known.server:
        return json_response({"errcode": "M_NOT_FOUND", "error": "No delegation configured"}, 404)
    return json_response({"m.server": config.well_known.server})


@routes.get("/.well-known/matrix/support")
async def well_known_support(request: web.Request) -> web.Response:
    """Spec: https://spec.matrix.org/v1.19/client-server-api/#getwell-knownmatrixsupport"""
    support = services(request).config.well_known.support
    if not support.contacts and support.support_page is None:
        return json_response({"errcode": "M_NOT_FOUND", "error": "No support contacts configured"}, 404)
    body: dict = {}
    if support.contacts:
        body["contacts"] = [c.model_dump(exclude_none=True) for c in support.contacts]
    if support.support_page is not None:
        body["support_page"] = support.support_page
    return json_response(body)


@routes.get(V3 + "/capabilities")
async def capabilities(request: web.Request) -> web.Response:
    await requester(request)
    return json_response({
        "capabilities": {
            "m.change_password": {"enabled": True},
            "m.room_versions": {
                "default": DEFAULT_ROOM_VERSION.identifier,
                "available": {
                    v.identifier: "stable" if v.stable else "unstable" for v in KNOWN_ROOM_VERSIONS.values()
                },
            },
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": True},
            "m.profile_fields": {"enabled": True},
        }
    })
