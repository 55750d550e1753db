"""Admin endpoints over local users: whois, suspension and locking.

Spec v1.18: https://spec.matrix.org/v1.19/client-server-api/#server-administration
(GET /_matrix/client/v1/admin/whois, GET/PUT .../admin/suspend and .../admin/lock),
plus Synapse's GET /_synapse/admin/v1/whois/{userId} in the same shape for admin tools.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V1, V3, Body, access_token_of, requester, route_pattern, services
from homeserver.errors import MatrixError
from homeserver.http import Handler, json_response, parse_model, read_json_object

routes = web.RouteTableDef()


class SuspendBody(Body):
    suspended: bool


class LockBody(Body):
    locked: bool


@routes.get("/_synapse/admin/v1/whois/{user_id}")
@routes.get(V1 + "/admin/whois/{user_id}")
@routes.get(V3 + "/admin/whois/{user_id}")
async def whois(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response(await services(request).user_admin.whois(who, request.match_info["user_id"]))


@routes.get(V1 + "/admin/suspend/{user_id}")
async def get_suspended(request: web.Request) -> web.Response:
    who = await requester(request)
    user = await services(request).user_admin.get_flags(who, request.match_info["user_id"])
    return json_response({"suspended": user.suspended})


@routes.put(V1 + "/admin/suspend/{user_id}")
async def put_suspended(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(SuspendBody, await read_json_object(request))
    await services(request).user_admin.set_suspended(who, request.match_info["user_id"], body.suspended)
    return json_response({"suspended": body.suspended})


@routes.get(V1 + "/admin/lock/{user_id}")
async def get_locked(request: web.Request) -> web.Response:
    who = await requester(request)
    user = await services(request).user_admin.get_flags(who, request.match_info["user_id"])
    return json_response({"locked": user.locked})


@routes.put(V1 + "/admin/lock/{user_id}")
async def put_locked(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(LockBody, await read_json_object(request))
    await services(request).user_admin.set_locked(who, request.match_info["user_id"], body.locked)
    return json_response({"locked": body.locked})


# What a suspended user may not do (MSC3823 leaves the list to the server; as Synapse:
# no new messages, state, rooms, joins, knocks, invites or profile changes). Reading,
# leaving, rejecting invites, redacting and key management stay open.
_C = "/_matrix/client/{version}"  # the pattern of a V3 route (route_pattern)
_SUSPENDED_FORBIDS = {
    ("PUT", _C + "/rooms/{room_id}/send/{event_type}/{txn_id}"),
    ("PUT", _C + "/rooms/{room_id}/state/{event_type}"),
    ("PUT", _C + "/rooms/{room_id}/state/{event_type}/{state_key}"),
    ("POST", _C + "/createRoom"),
    ("POST", _C + "/join/{room_id_or_alias}"),
    ("POST", _C + "/rooms/{room_id}/join"),
    ("POST", _C + "/knock/{room_id_or_alias}"),
    ("POST", _C + "/rooms/{room_id}/invite"),
    ("PUT", _C + "/profile/{user_id}/{field}"),
}


@web.middleware
async def suspension_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 M_USER_SUSPENDED for the actions a suspended user may not take.

    Kept at the edge so that the services stay unaware of admin holds; it runs
    after routing, inside the error middleware.
    """
    if (request.method, route_pattern(request.match_info.route.resource)) in _SUSPENDED_FORBIDS:
        is_redaction = request.match_info.get("event_type") == "m.room.redaction" and "txn_id" in request.match_info
        token = access_token_of(request)
        if token and not is_redaction:
            who = await services(request).tokens.authenticate(token)
            if who.suspended:
                raise MatrixError(403, "M_USER_SUSPENDED", "This account has been suspended")
    return await handler(request)

