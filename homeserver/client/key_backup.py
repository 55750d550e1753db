"""Server-side key backups. Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from homeserver.client.base import V3, Body, requester, services
from homeserver.errors import MatrixError, missing_param
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.services.key_backup import RoomKey

routes = web.RouteTableDef()


class VersionBody(Body):
    algorithm: str
    auth_data: dict[str, Any]


class KeyBackupData(Body):
    first_message_index: int = Field(ge=0, le=2**53)
    forwarded_count: int = Field(ge=0, le=2**53)
    is_verified: bool
    session_data: dict[str, Any]


class RoomKeyBackup(Body):
    sessions: dict[str, KeyBackupData]


class RoomKeysBody(Body):
    rooms: dict[str, RoomKeyBackup]


def _version_param(request: web.Request) -> str:
    version = request.query.get("version")
    if version is None:
        raise missing_param("The version query parameter is required")
    return version


def _room_keys(rooms: dict[str, RoomKeyBackup]) -> list[RoomKey]:
    return [
        RoomKey(room_id, session_id, **data.model_dump(include={
            "first_message_index", "forwarded_count", "is_verified", "session_data"}))
        for room_id, room in rooms.items() for session_id, data in room.sessions.items()
    ]


def _rooms_json(keys: list[RoomKey]) -> dict[str, Any]:
    rooms: dict[str, Any] = {}
    for key in keys:
        rooms.setdefault(key.room_id, {"sessions": {}})["sessions"][key.session_id] = key.to_json()
    return rooms


@routes.post(V3 + "/room_keys/version")
async def create_version(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(VersionBody, await read_json_object(request))
    version = await services(request).key_backup.create_version(who.user_id, body.algorithm, body.auth_data)
    return json_response({"version": version})


@routes.get(V3 + "/room_keys/version")
async def current_version(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response(await services(request).key_backup.get_version(who.user_id, None))


@routes.get(V3 + "/room_keys/version/{backup_version}")
async def get_version(request: web.Request) -> web.Response:
    who = await requester(request)
    version = request.match_info["backup_version"]
    return json_response(await services(request).key_backup.get_version(who.user_id, version))


@routes.put(V3 + "/room_keys/version/{backup_version}")
async def update_version(request: web.Request) -> web.Response:
    who = await requester(request)
    raw = await read_json_object(request)
    parse_model(VersionBody, raw)
    await services(request).key_backup.update_version(who.user_id, request.match_info["backup_version"], raw)
    return json_response({})


@routes.delete(V3 + "/room_keys/version/{backup_version}")
async def delete_version(request: web.Request) -> web.Response:
    who = await requester(request)
    await services(request).key_backup.delete_version(who.user_id, request.match_info["backup_version"])
    return json_response({})


@routes.put(V3 + "/room_keys/keys")
async def put_all_keys(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(RoomKeysBody, await read_json_object(request))
    return json_response(await services(request).key_backup.put_keys(
        who.user_id, _version_param(request), _room_keys(body.rooms)))


@routes.put(V3 + "/room_keys/keys/{room_id}")
async def put_room_keys(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(RoomKeyBackup, await read_json_object(request))
    rooms = {request.match_info["room_id"]: body}
    return json_response(await services(request).key_backup.put_keys(
        who.user_id, _version_param(request), _room_keys(rooms)))


@routes.put(V3 + "/room_keys/keys/{room_id}/{session_id}")
async def put_session_key(request: web.Request) -> web.Response:
    who = await requester(request)
    data = parse_model(KeyBackupData, await read_json_object(request))
    rooms = {request.match_info["room_id"]: RoomKeyBackup(sessions={request.match_info["session_id"]: data})}
    return json_response(await services(request).key_backup.put_keys(
        who.user_id, _version_param(request), _room_keys(rooms)))


@routes.get(V3 + "/room_keys/keys")
async def get_all_keys(request: web.Request) -> web.Response:
    who = await requester(request)
    keys = await services(request).key_backup.get_keys(who.user_id, _version_param(request), None, None)
    return json_response({"rooms": _rooms_json(keys)})


@routes.get(V3 + "/room_keys/keys/{room_id}")
async def get_room_keys(request: web.Request) -> web.Response:
    who = await requester(request)
    room_id = request.match_info["room_id"]
    keys = await services(request).key_backup.get_keys(who.user_id, _version_param(request), room_id, None)
    # A room without keys is an empty map, as Synapse answers.
    return json_response(_rooms_json(keys).get(room_id, {"sessions": {}}))


@routes.get(V3 + "/room_keys/keys/{room_id}/{session_id}")
async def get_session_key(request: web.Request) -> web.Response:
    who = await requester(request)
    keys = await services(request).key_backup.get_keys(
        who.user_id, _version_param(request), request.match_info["room_id"], request.match_info["session_id"])
    if not keys:
        raise MatrixError(404, "M_NOT_FOUND", "No room_keys found")
    return json_response(keys[0].to_json())


@routes.delete(V3 + "/room_keys/keys")
async def delete_all_keys(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response(await services(request).key_backup.delete_keys(
        who.user_id, _version_param(request), None, None))


@routes.delete(V3 + "/room_keys/keys/{room_id}")
async def delete_room_keys(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response(await services(request).key_backup.delete_keys(
        who.user_id, _version_param(request), request.match_info["room_id"], None))


@routes.delete(V3 + "/room_keys/keys/{room_id}/{session_id}")
async def delete_session_key(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response(await services(request).key_backup.delete_keys(
        who.user_id, _version_param(request), request.match_info["room_id"], request.match_info["session_id"]))
