"""Presence. Spec: https://spec.matrix.org/v1.19/client-server-api/#presence"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from aiohttp import web

from homeserver.appkeys import SERVICES
from homeserver.client.base import V3, Body, requester, same_user, services
from homeserver.errors import invalid_param
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.protocol import ids

routes = web.RouteTableDef()


class PresenceBody(Body):
    presence: Literal["online", "unavailable", "offline"]
    status_msg: str | None = None


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    if not ids.is_valid_user_id(user_id):
        raise invalid_param("Invalid user id")
    return user_id


@routes.put(V3 + "/presence/{user_id}/status")
async def put_status(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, _user_id(request))
    body = parse_model(PresenceBody, await read_json_object(request))
    await services(request).presence.set_presence(who.user_id, body.presence, body.status_msg)
    return json_response({})


@routes.get(V3 + "/presence/{user_id}/status")
async def get_status(request: web.Request) -> web.Response:
    who = await requester(request)
    content = await services(request).presence.get_presence_for(who.user_id, _user_id(request))
    return json_response(content)


async def idle_sweeper(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: while the app runs, the presence idle sweep runs on the
    cluster's leader (this process, unless others share the database)."""
    presence, cluster = app[SERVICES].presence, app[SERVICES].cluster
    await cluster.run_on_leader(presence.start_sweeping, presence.stop_sweeping)
    try:
        yield
    finally:
        await cluster.end_job(presence.start_sweeping, presence.stop_sweeping)
