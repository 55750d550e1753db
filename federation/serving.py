"""Server-Server routes through which other servers read from us: events, state, auth
chains, backfill, missing events, timestamps, queries, the public room list, devices
and keys.

Spec: https://spec.matrix.org/v1.19/server-server-api/. Every route but /version
is authenticated with X-Matrix (``federation_origin``); the domain rules are in
homeserver/services/federation_reads.py and federation_queries.py.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from federation.auth import federation_origin
from homeserver import __version__
from homeserver.appkeys import SERVICES
from homeserver.errors import invalid_param, missing_param
from homeserver.http import json_response, query_bool, query_int, read_model
from homeserver.protocol import ids
from homeserver.services.clock import now_ms
from homeserver.services.federation_queries import FederationQueries
from homeserver.services.federation_reads import DEFAULT_MISSING_EVENTS, FederationReads
from homeserver.services.room_directory import DirectoryRequest

V1 = "/_matrix/federation/v1"

READS = web.AppKey("federation_reads", FederationReads)
QUERIES = web.AppKey("federation_queries", FederationQueries)

routes = web.RouteTableDef()


def install(app: web.Application) -> None:
    """Build the read services from the app's services and mount the routes."""
    services = app[SERVICES]
    app[READS] = FederationReads.wired(services)
    app[QUERIES] = FederationQueries.wired(services)
    app.router.add_routes(routes)


class Body(BaseModel):
    """A request body from another server: strict types, unknown keys allowed."""

    model_config = ConfigDict(strict=True, extra="allow")


class MissingEventsBody(Body):
    earliest_events: list[str]
    latest_events: list[str]
    limit: int = DEFAULT_MISSING_EVENTS
    min_depth: int = 0


class DirectoryFilter(Body):
    generic_search_term: str | None = None
    room_types: list[str | None] | None = None


class PublicRoomsBody(Body):
    limit: int | None = None
    since: str | None = None
    filter: DirectoryFilter | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


class KeysQueryBody(Body):
    device_keys: dict[str, list[str]]


class KeysClaimBody(Body):
    one_time_keys: dict[str, dict[str, str]]


def _reads(request: web.Request) -> FederationReads:
    return request.app[READS]


def _queries(request: web.Request) -> FederationQueries:
    return request.app[QUERIES]


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not ids.is_valid_room_id(room_id):
        raise invalid_param("Invalid room id")
    return room_id


def _event_id(value: str) -> str:
    if not ids.is_valid_event_id(value):
        raise invalid_param("Invalid event id")
    return value


def _required(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if value is None:
        raise missing_param(f"Missing query parameter {name}")
    return value


def _transaction(request: web.Request, pdus: list) -> web.Response:
    """The transaction shape of /event and /backfill answers."""
    return json_response({
        "origin": request.app[SERVICES].server_name, "origin_server_ts": now_ms(), "pdus": pdus,
    })


@routes.get(V1 + "/version")
async def version(request: web.Request) -> web.Response:
    # No authentication: the spec gives this endpoint none.
    return json_response({"server": {"name": "homeserver", "version": __version__}})


# Retrieving events

@routes.get(V1 + "/event/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    event_id = _event_id(request.match_info["event_id"])
    return _transaction(request, [await _reads(request).event(origin, event_id)])


@routes.get(V1 + "/state/{room_id}")
async def get_state(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id = _room_id(request)
    event_id = _event_id(_required(request, "event_id"))
    pdus, auth_chain = await _reads(request).state_at(origin, room_id, event_id)
    return json_response({"pdus": pdus, "auth_chain": auth_chain})


@routes.get(V1 + "/state_ids/{room_id}")
async def get_state_ids(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id = _room_id(request)
    event_id = _event_id(_required(request, "event_id"))
    pdu_ids, auth_chain_ids = await _reads(request).state_ids_at(origin, room_id, event_id)
    return json_response({"pdu_ids": pdu_ids, "auth_chain_ids": auth_chain_ids})


@routes.get(V1 + "/event_auth/{room_id}/{event_id}")
async def get_event_auth(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id = _room_id(request)
    event_id = _event_id(request.match_info["event_id"])
    return json_response({"auth_chain": await _reads(request).event_auth(origin, room_id, event_id)})


# Backfilling and missing events

@routes.get(V1 + "/backfill/{room_id}")
async def backfill(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id = _room_id(request)
    from_ids = [_event_id(v) for v in request.query.getall("v", [])]
    if not from_ids:
        raise missing_param("Missing query parameter v")
    limit = query_int(request, "limit")
    if limit is None:
        raise missing_param("Missing query parameter limit")
    return _transaction(request, await _reads(request).backfill(origin, room_id, from_ids, limit))


@routes.post(V1 + "/get_missing_events/{room_id}")
async def get_missing_events(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id = _room_id(request)
    body = await read_model(request, MissingEventsBody)
    events = await _reads(request).missing_events(
        origin, room_id, body.earliest_events, body.latest_events, body.limit, body.min_depth
    )
    return json_response({"events": events})


@routes.get(V1 + "/timestamp_to_event/{room_id}")
async def timestamp_to_event(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id = _room_id(request)
    ts = query_int(request, "ts")
    if ts is None:
        raise missing_param("Missing query parameter ts")
    direction = _required(request, "dir")
    if direction not in ("f", "b"):
        raise invalid_param("dir must be 'f' or 'b'")
    return json_response(await _reads(request).timestamp_to_event(origin, room_id, ts, direction == "f"))


# Queries

@routes.get(V1 + "/query/profile")
async def query_profile(request: web.Request) -> web.Response:
    await federation_origin(request)
    user_id = _required(request, "user_id")
    return json_response(await _queries(request).profile(user_id, request.query.get("field")))


@routes.get(V1 + "/query/directory")
async def query_directory(request: web.Request) -> web.Response:
    await federation_origin(request)
    return json_response(await _queries(request).room_alias(_required(request, "room_alias")))


# The public room directory

@routes.get(V1 + "/publicRooms")
async def get_public_rooms(request: web.Request) -> web.Response:
    await federation_origin(request)
    directory_request = DirectoryRequest(
        limit=query_int(request, "limit"), since=request.query.get("since"),
        third_party_instance_id=request.query.get("third_party_instance_id"),
        include_all_networks=query_bool(request, "include_all_networks"),
    )
    return json_response(await _queries(request).public_rooms(directory_request))


@routes.post(V1 + "/publicRooms")
async def post_public_rooms(request: web.Request) -> web.Response:
    await federation_origin(request)
    body = await read_model(request, PublicRoomsBody, allow_empty=True)
    directory_request = DirectoryRequest(
        limit=body.limit, since=body.since,
        search_term=body.filter.generic_search_term if body.filter else None,
        room_types=body.filter.room_types if body.filter else None,
        third_party_instance_id=body.third_party_instance_id, include_all_networks=body.include_all_networks,
    )
    return json_response(await _queries(request).public_rooms(directory_request))


# Devices and end-to-end keys

@routes.get(V1 + "/user/devices/{user_id}")
async def user_devices(request: web.Request) -> web.Response:
    await federation_origin(request)
    return json_response(await _queries(request).user_devices(request.match_info["user_id"]))


@routes.post(V1 + "/user/keys/query")
async def query_keys(request: web.Request) -> web.Response:
    await federation_origin(request)
    body = await read_model(request, KeysQueryBody)
    return json_response(await _queries(request).query_keys(body.device_keys))


@routes.post(V1 + "/user/keys/claim")
async def claim_keys(request: web.Request) -> web.Response:
    await federation_origin(request)
    body = await read_model(request, KeysClaimBody)
    return json_response(await _queries(request).claim_keys(body.one_time_keys))
