"""/sync and filters. Spec: https://spec.matrix.org/v1.19/client-server-api/#syncing"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, same_user, services
from homeserver.errors import invalid_param, not_found
from homeserver.http import json_response, query_bool, query_int, read_json_object
from homeserver.services.sync import SyncRequest
from homeserver.services.tokens import SyncToken

routes = web.RouteTableDef()

MAX_TIMEOUT_MS = 5 * 60 * 1000


@routes.get(V3 + "/sync")
async def sync(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    since = request.query.get("since")
    sync_filter = await svc.sync_filters.for_sync(who.user_id, request.query.get("filter"))
    timeout_ms = query_int(request, "timeout", default=0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0
    set_presence = request.query.get("set_presence", "online")
    if set_presence not in ("online", "offline", "unavailable"):
        raise invalid_param("set_presence must be online, offline or unavailable")
    result = await svc.sync.sync(SyncRequest(
        requester=who,
        since=SyncToken.parse(since) if since else None,
        timeout_ms=timeout_ms,
        full_state=query_bool(request, "full_state"),
        filter=sync_filter,
        use_state_after=query_bool(request, "use_state_after"),
        set_presence=set_presence,
    ))
    return json_response(result)


@routes.post(V3 + "/user/{user_id}/filter")
async def create_filter(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    filter_id = await services(request).sync_filters.upload(who.user_id, await read_json_object(request))
    return json_response({"filter_id": str(filter_id)})


@routes.get(V3 + "/user/{user_id}/filter/{filter_id}")
async def get_filter(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    stored = await services(request).sync_filters.get(who.user_id, request.match_info["filter_id"])
    if stored is None:
        raise not_found("No such filter")
    return json_response(stored)
