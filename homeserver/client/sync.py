"""/sync and filters. Spec: https://spec.matrix.org/v1.19/client-server-api/#syncing"""

from __future__ import annotations

import json

from aiohttp import web

from homeserver.client.base import V3, requester, same_user, services
from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.http import json_response, query_bool, query_int, read_json_object
from homeserver.protocol.filters import FilterError, SyncFilter, parse_sync_filter
from homeserver.services.sync import SyncRequest
from homeserver.services.tokens import SyncToken

routes = web.RouteTableDef()

MAX_TIMEOUT_MS = 5 * 60 * 1000
MAX_FILTER_ID = 2**63 - 1


@routes.get(V3 + "/sync")
async def sync(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    since = request.query.get("since")
    sync_filter = await _sync_filter(request, who.user_id)
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


async def _sync_filter(request: web.Request, user_id: str) -> SyncFilter:
    raw = request.query.get("filter")
    if raw is None:
        return SyncFilter()
    try:
        if raw.lstrip().startswith("{"):
            return parse_sync_filter(json.loads(raw))
        filter_id = _filter_id(raw)
        stored = await services(request).filters.get(user_id, filter_id) if filter_id is not None else None
        if stored is None:
            # A bad query parameter rather than a missing resource (as Synapse answers).
            raise invalid_param("No such filter")
        return parse_sync_filter(stored)
    except (ValueError, RecursionError, FilterError) as e:  # RecursionError: absurdly nested JSON
        raise invalid_param(f"Invalid filter: {e}")


def _filter_id(raw: str) -> int | None:
    """The filter id we handed out (a non-negative bigint), or None if it cannot be one."""
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_FILTER_ID:
        return None
    return int(raw)


@routes.post(V3 + "/user/{user_id}/filter")
async def create_filter(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    body = await read_json_object(request)
    try:
        parse_sync_filter(body)
    except FilterError as e:
        raise MatrixError(400, "M_BAD_JSON", f"Invalid filter: {e}")
    filter_id = await services(request).filters.add(who.user_id, body)
    return json_response({"filter_id": str(filter_id)})


@routes.get(V3 + "/user/{user_id}/filter/{filter_id}")
async def get_filter(request: web.Request) -> web.Response:
    who = await requester(request)
    same_user(who, request.match_info["user_id"])
    filter_id = _filter_id(request.match_info["filter_id"])
    stored = await services(request).filters.get(who.user_id, filter_id) if filter_id is not None else None
    if stored is None:
        raise not_found("No such filter")
    return json_response(stored)
