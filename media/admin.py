"""The admin media API, shaped like Synapse's so that existing admin tools work.

Synapse docs: docs/admin_api/media_admin_api.md, statistics.md and
user_admin_api.md ("User media"). Every route is for server admins only.
The operations live in MediaAdmin (media/admin_service.py) so that the `homeserver media ...` commands
run the very same code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from homeserver.errors import forbidden, invalid_param, missing_param, not_found
from homeserver.http import json_response, query_bool, query_int
from homeserver.request_context import requester, services
from homeserver.services.admin_audit import audit
from homeserver.services.auth import Requester
# MediaAdmin and parse_mxc are also imported from here (homeserver/cli.py).
from media.admin_service import USAGE_ORDER, USER_MEDIA_ORDER, MediaAdmin, item_json, parse_mxc  # noqa: F401
from media.app_keys import MEDIA
from media.names import check_mxc_parts

ADMIN = "/_synapse/admin/v1"
# Synapse refuses timestamps this small: they are seconds where milliseconds were meant,
# and would purge nothing (or, read the other way, everything).
_SECONDS_NOT_MILLISECONDS = 30_000_000_000


routes = web.RouteTableDef()


def _admin(request: web.Request) -> MediaAdmin:
    return MediaAdmin.for_services(services(request), request.app[MEDIA])


async def _require_admin(request: web.Request) -> Requester:
    who = await requester(request)
    if not who.is_admin:
        raise forbidden("You are not a server admin")
    return who


def _timestamp(request: web.Request, name: str, required: bool = False) -> int | None:
    if required and name not in request.query:
        raise missing_param(f"Missing query parameter {name}")
    value = query_int(request, name)
    if value is not None and name == "before_ts" and value < _SECONDS_NOT_MILLISECONDS:
        raise invalid_param(
            f"Query parameter {name} you provided is from the year 1970. "
            "Double check that you are providing a timestamp in milliseconds."
        )
    return value


def _choice(request: web.Request, name: str, allowed, default: str) -> str:
    value = request.query.get(name, default)
    if value not in allowed:
        raise invalid_param(f"Query parameter {name} must be one of {', '.join(sorted(allowed))}")
    return value


def _page(request: web.Request) -> tuple[int, int]:
    return query_int(request, "limit", default=100, maximum=10_000), query_int(request, "from", default=0)


def _with_next_token(body: dict[str, Any], offset: int, count: int, total: int) -> dict[str, Any]:
    if offset + count < total:
        body["next_token"] = offset + count
    return body


@routes.get(f"{ADMIN}/statistics/users/media")
async def usage_statistics(request: web.Request) -> web.Response:
    await _require_admin(request)
    limit, offset = _page(request)
    order_by = _choice(request, "order_by", USAGE_ORDER, "user_id")
    direction = _choice(request, "dir", ("f", "b"), "f")
    from_ts = query_int(request, "from_ts")
    until_ts = query_int(request, "until_ts")
    if from_ts is not None and until_ts is not None and until_ts < from_ts:
        raise invalid_param("Query parameter until_ts must be greater than from_ts")
    search_term = request.query.get("search_term")
    if search_term is not None and not search_term:
        raise invalid_param("Query parameter search_term cannot be empty")
    users, total = await _admin(request).usage(
        order_by=order_by, descending=direction == "b", limit=limit, offset=offset,
        from_ts=from_ts, until_ts=until_ts, search_term=search_term,
    )
    body = {"users": [dataclasses.asdict(u) for u in users], "total": total}
    return json_response(_with_next_token(body, offset, len(users), total))


def _user_media_query(request: web.Request) -> tuple[str, bool, int, int]:
    limit, offset = _page(request)
    order_by = _choice(request, "order_by", USER_MEDIA_ORDER, "created_ts")
    # Without order_by and dir: newest first, as Synapse.
    default_dir = "b" if "order_by" not in request.query else "f"
    direction = _choice(request, "dir", ("f", "b"), default_dir)
    return order_by, direction == "b", limit, offset


@routes.get(ADMIN + "/users/{user_id}/media")
async def list_user_media(request: web.Request) -> web.Response:
    await _require_admin(request)
    order_by, descending, limit, offset = _user_media_query(request)
    items, total = await _admin(request).user_media(
        request.match_info["user_id"], order_by=order_by, descending=descending, limit=limit, offset=offset,
    )
    protected = await _admin(request).protected_among([item.media_id for item in items])
    body = {"media": [item_json(item, item.media_id in protected) for item in items], "total": total}
    return json_response(_with_next_token(body, offset, len(items), total))


@routes.delete(ADMIN + "/users/{user_id}/media")
async def delete_user_media(request: web.Request) -> web.Response:
    await _require_admin(request)
    order_by, descending, limit, offset = _user_media_query(request)
    admin = _admin(request)
    items, _ = await admin.user_media(
        request.match_info["user_id"], order_by=order_by, descending=descending, limit=limit, offset=offset,
    )
    deleted = await admin.delete_many([item.media_id for item in items])
    return json_response({"deleted_media": deleted, "total": len(deleted)})


@routes.get(ADMIN + "/media/{server_name}/{media_id}")
async def media_info(request: web.Request) -> web.Response:
    await _require_admin(request)
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    check_mxc_parts(server_name, media_id)
    info = await _admin(request).media_info(server_name, media_id)
    if info is None:
        raise not_found("Unknown media")
    return json_response({"media_info": info})


@routes.delete(ADMIN + "/media/{server_name}/{media_id}")
async def delete_media(request: web.Request) -> web.Response:
    await _require_admin(request)
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    admin = _admin(request)
    if not admin.is_local(server_name):
        raise invalid_param("Can only delete local media")
    check_mxc_parts(server_name, media_id)
    if not await admin.delete(server_name, media_id):
        raise not_found("Unknown media")
    return json_response({"deleted_media": [media_id], "total": 1})


@routes.post(ADMIN + "/media/delete")
@routes.post(ADMIN + "/media/{server_name}/delete")  # deprecated by Synapse 1.78, still used
async def purge_local_media(request: web.Request) -> web.Response:
    await _require_admin(request)
    admin = _admin(request)
    server_name = request.match_info.get("server_name")
    if server_name is not None and not admin.is_local(server_name):
        raise invalid_param("Can only delete local media")
    before_ts = _timestamp(request, "before_ts", required=True)
    size_gt = query_int(request, "size_gt", default=0)
    keep_profiles = query_bool(request, "keep_profiles", default=True)
    deleted = await admin.purge_local(before_ts, by_access=True, size_gt=size_gt, keep_profiles=keep_profiles)
    return json_response({"deleted_media": deleted, "total": len(deleted)})


@routes.post(ADMIN + "/purge_media_cache")
async def purge_remote_cache(request: web.Request) -> web.Response:
    await _require_admin(request)
    before_ts = _timestamp(request, "before_ts", required=True)
    return json_response({"deleted": await _admin(request).purge_remote(before_ts)})


async def _quarantine(request: web.Request, quarantine: bool) -> web.Response:
    who = await _require_admin(request)
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    check_mxc_parts(server_name, media_id)
    by = who.user_id if quarantine else None
    if not await _admin(request).set_quarantine(server_name, media_id, by):
        raise not_found("Unknown media")
    return json_response({})


@routes.post(ADMIN + "/media/quarantine/{server_name}/{media_id}")
async def quarantine_media(request: web.Request) -> web.Response:
    return await _quarantine(request, True)


@routes.post(ADMIN + "/media/unquarantine/{server_name}/{media_id}")
async def unquarantine_media(request: web.Request) -> web.Response:
    return await _quarantine(request, False)


async def _protect(request: web.Request, protected: bool) -> web.Response:
    """Synapse docs: media_admin_api.md, "Protecting media from being quarantined". Local
    media only (the path has no server name); protected media is also kept by
    POST /media/delete. Unknown media answers 404, where Synapse answers {}."""
    who = await _require_admin(request)
    media_id = request.match_info["media_id"]
    admin = _admin(request)
    check_mxc_parts(admin.server_name, media_id)
    if not await admin.set_protected(media_id, who.user_id if protected else None):
        raise not_found("Unknown media")
    audit(who.user_id, "protect_media" if protected else "unprotect_media", media_id)
    return json_response({})


@routes.post(ADMIN + "/media/protect/{media_id}")
async def protect_media(request: web.Request) -> web.Response:
    return await _protect(request, True)


@routes.post(ADMIN + "/media/unprotect/{media_id}")
async def unprotect_media(request: web.Request) -> web.Response:
    return await _protect(request, False)


@routes.post(ADMIN + "/user/{user_id}/media/quarantine")
async def quarantine_user_media(request: web.Request) -> web.Response:
    """Synapse docs: media_admin_api.md, "Quarantining all media of a user" (protected
    media is left alone). An unknown or remote user is refused, where Synapse answers 0."""
    who = await _require_admin(request)
    user_id = request.match_info["user_id"]
    count = await _admin(request).quarantine_user_media(user_id, who.user_id)
    audit(who.user_id, "quarantine_user_media", user_id, num_quarantined=count)
    return json_response({"num_quarantined": count})
