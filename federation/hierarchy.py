"""The space hierarchy over federation: served to other servers, and asked of them for our clients.

Spec: https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1hierarchyroomid
The rules are in homeserver/services/hierarchy.py; this module is the HTTP on either side.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from aiohttp import web

from federation.auth import federation_origin
from federation.client import FederationError, FederationUnreachable
from federation.context import Federation
from homeserver.errors import invalid_param
from homeserver.http import json_response, query_bool
from homeserver.protocol import ids
from homeserver.services.hierarchy import HIERARCHY

log = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
# A space's answer holds at most 50 summaries; a slow server should not hold up a client's page.
FETCH_TIMEOUT_SECONDS = 15

routes = web.RouteTableDef()


class RemoteHierarchy:
    """What HierarchyService asks of other servers (explicit wiring: set by install)."""

    def __init__(self, fed: Federation):
        self.fed = fed

    async def fetch(self, server: str, room_id: str, suggested_only: bool) -> Any:
        path = f"{V1}/hierarchy/{quote(room_id, safe='')}"
        query = {"suggested_only": "true" if suggested_only else "false"}
        try:
            return await self.fed.client.get_json(server, path, query, timeout=FETCH_TIMEOUT_SECONDS)
        except FederationError as e:
            log.info("%s refused the hierarchy of %s: %s %s", server, room_id, e.status, e.errcode)
        except FederationUnreachable as e:
            log.info("could not ask %s for the hierarchy of %s: %s", server, room_id, e)
        return None


def install(app: web.Application, fed: Federation) -> None:
    app[HIERARCHY].remote = RemoteHierarchy(fed)
    app.router.add_routes(routes)


@routes.get(V1 + "/hierarchy/{room_id}")
async def get_hierarchy(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id = request.match_info["room_id"]
    if not ids.is_valid_room_id(room_id):
        raise invalid_param("Invalid room id")
    suggested_only = query_bool(request, "suggested_only")
    return json_response(await request.app[HIERARCHY].federation_hierarchy(origin, room_id, suggested_only))
