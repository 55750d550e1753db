"""Reporting content, and the admin API that lists the reports.

Client API (spec: https://spec.matrix.org/v1.19/client-server-api/#reporting-content):
POST /rooms/{roomId}/report/{eventId}, POST /rooms/{roomId}/report (v1.13) and
POST /users/{userId}/report (v1.14).

Admin API, for server admins only. Event reports are Synapse's API as its admin tools call it
(docs/admin_api/event_reports.md): GET /_synapse/admin/v1/event_reports (from, limit, dir,
user_id, room_id) -> {event_reports, next_token?, total}, GET and DELETE .../event_reports/{id}.
Room and user reports, which that API does not cover, are not mixed into it (its tools expect
an event on every row): they have lists of the same shape beside it,
/_synapse/admin/v1/room_reports and /_synapse/admin/v1/user_reports (user_id filters by
reporter, target_user_id by the reported user), each with GET and DELETE .../{id}.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.appkeys import SERVICES
from homeserver.client.base import Body, V3, add_client_routes, requester
from homeserver.client.rooms import _room_id
from homeserver.errors import forbidden, invalid_param
from homeserver.http import json_response, query_int, read_model
from homeserver.services.auth import Requester
from homeserver.services.reports import ReportService

routes = web.RouteTableDef()

REPORTS = web.AppKey("reports", ReportService)
ADMIN = "/_synapse/admin/v1"
DEFAULT_ADMIN_LIMIT = 100
MAX_ADMIN_LIMIT = 1000


def install(app: web.Application) -> None:
    # REPORTS stays for code that reads it; the service itself is wired in the container.
    app[REPORTS] = app[SERVICES].reports
    add_client_routes(app.router, routes)


class EventReport(Body):
    reason: str | None = None
    score: int | None = None


class Report(Body):
    reason: str | None = None


def _reports(request: web.Request) -> ReportService:
    return request.app[REPORTS]


@routes.post(V3 + "/rooms/{room_id}/report/{event_id}")
async def report_event(request: web.Request) -> web.Response:
    who = await requester(request)
    room_id = _room_id(request)
    body = await read_model(request, EventReport, allow_empty=True)
    await _reports(request).report_event(
        who.user_id, room_id, request.match_info["event_id"], body.reason, body.score)
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/report")
async def report_room(request: web.Request) -> web.Response:
    who = await requester(request)
    room_id = _room_id(request)
    body = await read_model(request, Report, allow_empty=True)
    await _reports(request).report_room(who.user_id, room_id, body.reason)
    return json_response({})


@routes.post(V3 + "/users/{user_id}/report")
async def report_user(request: web.Request) -> web.Response:
    who = await requester(request)
    body = await read_model(request, Report, allow_empty=True)
    await _reports(request).report_user(who.user_id, request.match_info["user_id"], body.reason)
    return json_response({})


# Admin

async def _require_admin(request: web.Request) -> Requester:
    who = await requester(request)
    if not who.is_admin:
        raise forbidden("You are not a server admin")
    return who


def _report_id(request: web.Request) -> int:
    raw = request.match_info["report_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise invalid_param("The report id must be a positive integer")
    return int(raw)


def _list_handler(kind: str):
    async def handler(request: web.Request) -> web.Response:
        await _require_admin(request)
        offset = query_int(request, "from", 0)
        limit = query_int(request, "limit", DEFAULT_ADMIN_LIMIT, maximum=MAX_ADMIN_LIMIT)
        direction = request.query.get("dir", "b")
        if direction not in ("b", "f"):
            raise invalid_param("dir must be 'b' or 'f'")
        page = await _reports(request).page(
            kind, offset, limit, newest_first=direction == "b", reporter=request.query.get("user_id"),
            room_id=request.query.get("room_id") if kind != "user" else None,
            target_user_id=request.query.get("target_user_id") if kind == "user" else None,
        )
        return json_response(page)
    return handler


def _get_handler(kind: str):
    async def handler(request: web.Request) -> web.Response:
        await _require_admin(request)
        return json_response(await _reports(request).get(kind, _report_id(request)))
    return handler


def _delete_handler(kind: str):
    async def handler(request: web.Request) -> web.Response:
        await _require_admin(request)
        await _reports(request).delete(kind, _report_id(request))
        return json_response({})
    return handler


for _kind in ("event", "room", "user"):
    routes.get(f"{ADMIN}/{_kind}_reports")(_list_handler(_kind))
    routes.get(f"{ADMIN}/{_kind}_reports/{{report_id}}")(_get_handler(_kind))
    routes.delete(f"{ADMIN}/{_kind}_reports/{{report_id}}")(_delete_handler(_kind))
