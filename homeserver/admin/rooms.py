"""Rooms: list, details, members, state, forward extremities, block, delete (v1 in the
request, v2 in the background with a status), purge of old history. Synapse docs:
docs/admin_api/rooms.md and purge_history_api.md. Admins only.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.base import V1, V2, AdminBody, admin_services, body_of, descending, page, query_bool, \
    query_choice, require_admin
from homeserver.http import json_response, parse_model
from homeserver.services.admin_purge_history import PurgeRequest
from homeserver.services.admin_room_delete import DeleteOptions
from homeserver.services.admin_rooms import ROOM_ORDER_BY, RoomQuery

routes = web.RouteTableDef()


class DeleteRoomBody(AdminBody):
    # new_room_user_id, room_name: accepted, not acted on (no room to move the members to).
    new_room_user_id: str | None = None
    room_name: str | None = None
    message: str | None = None
    block: bool = False
    purge: bool = True
    force_purge: bool = False

    def options(self) -> DeleteOptions:
        return DeleteOptions(block=self.block, purge=self.purge, force_purge=self.force_purge, message=self.message)


class PurgeHistoryBody(AdminBody):
    delete_local_events: bool = False
    purge_up_to_event_id: str | None = None
    purge_up_to_ts: int | None = None


class BlockBody(AdminBody):
    block: bool


class JoinBody(AdminBody):
    user_id: str


@routes.get(V1 + "/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    offset, limit = page(request)
    query = RoomQuery(
        offset=offset, limit=limit, search_term=request.query.get("search_term") or None,
        order_by=query_choice(request, "order_by", ROOM_ORDER_BY, "name"), descending=descending(request),
        public_rooms=query_bool(request, "public_rooms"), empty_rooms=query_bool(request, "empty_rooms"),
    )
    return json_response(await admin_services(request).rooms.list_rooms(query))


@routes.get(V1 + "/rooms/{room_id}")
async def room_details(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).rooms.details(request.match_info["room_id"]))


@routes.get(V1 + "/rooms/{room_id}/members")
async def room_members(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).rooms.members(request.match_info["room_id"]))


@routes.get(V1 + "/rooms/{room_id}/state")
async def room_state(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).rooms.state_events(request.match_info["room_id"]))


@routes.get(V1 + "/rooms/{room_id}/forward_extremities")
async def forward_extremities(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).rooms.forward_extremities(request.match_info["room_id"]))


@routes.delete(V1 + "/rooms/{room_id}/forward_extremities")
async def delete_forward_extremities(request: web.Request) -> web.Response:
    who = await require_admin(request)
    return json_response(
        await admin_services(request).rooms.delete_forward_extremities(who, request.match_info["room_id"]))


@routes.get(V1 + "/rooms/{room_id}/block")
async def get_block(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).rooms.block_status(request.match_info["room_id"]))


@routes.put(V1 + "/rooms/{room_id}/block")
async def put_block(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(BlockBody, await body_of(request))
    await admin_services(request).rooms.set_blocked(who, request.match_info["room_id"], body.block)
    return json_response({"block": body.block})


@routes.delete(V2 + "/rooms/{room_id}")
async def delete_room_v2(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(DeleteRoomBody, await body_of(request))
    delete_id = await admin_services(request).room_deleter.start(who, request.match_info["room_id"], body.options())
    return json_response({"delete_id": delete_id})


@routes.get(V2 + "/rooms/{room_id}/delete_status")
async def delete_status_of_room(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).room_deleter.status_of_room(request.match_info["room_id"]))


@routes.get(V2 + "/rooms/delete_status/{delete_id}")
async def delete_status(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).room_deleter.status(request.match_info["delete_id"]))


@routes.delete(V1 + "/rooms/{room_id}")
@routes.post(V1 + "/rooms/{room_id}/delete")
async def delete_room_v1(request: web.Request) -> web.Response:
    who = await require_admin(request)
    body = parse_model(DeleteRoomBody, await body_of(request))
    result = await admin_services(request).room_deleter.delete_now(who, request.match_info["room_id"], body.options())
    return json_response(result)


@routes.post(V1 + "/join/{room_id_or_alias}")
async def join_user(request: web.Request) -> web.Response:
    """Synapse docs: docs/admin_api/room_membership.md."""
    who = await require_admin(request)
    body = parse_model(JoinBody, await body_of(request))
    room_id = await admin_services(request).rooms.join_user(who, request.match_info["room_id_or_alias"], body.user_id)
    return json_response({"room_id": room_id})


@routes.post(V1 + "/purge_history/{room_id}")
@routes.post(V1 + "/purge_history/{room_id}/{event_id}")
async def purge_history(request: web.Request) -> web.Response:
    """Synapse docs: docs/admin_api/purge_history_api.md. An event id in the path wins over
    the body's purge_up_to_event_id, which wins over purge_up_to_ts."""
    who = await require_admin(request)
    body = parse_model(PurgeHistoryBody, await body_of(request))
    purge_request = PurgeRequest(
        room_id=request.match_info["room_id"],
        up_to_event_id=request.match_info.get("event_id") or body.purge_up_to_event_id,
        up_to_ts=body.purge_up_to_ts, delete_local_events=body.delete_local_events,
    )
    purge_id = await admin_services(request).history_purger.start(who, purge_request)
    return json_response({"purge_id": purge_id})


@routes.get(V1 + "/purge_history_status/{purge_id}")
async def purge_history_status(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await admin_services(request).history_purger.status(request.match_info["purge_id"]))
