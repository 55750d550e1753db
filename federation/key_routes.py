"""The key routes: GET /_matrix/key/v2/server (our keys) and the notary queries of /_matrix/key/v2/query.

Spec: https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys
The KeyRing of federation/keys.py answers; this module is the HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from homeserver.http import json_response, parse_model, query_int, read_json_object

if TYPE_CHECKING:
    from federation.keys import KeyRing

KEY_SERVER_PATH = "/_matrix/key/v2/server"
KEY_QUERY_PATH = "/_matrix/key/v2/query"

# Typed by annotation: the KeyRing class lives above this module (federation/keys.py imports it).
KEYRING: web.AppKey[KeyRing] = web.AppKey("keyring")
routes = web.RouteTableDef()


class _Criteria(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    minimum_valid_until_ts: int | None = None


class _QueryBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    server_keys: dict[str, dict[str, _Criteria]]


@routes.get(KEY_SERVER_PATH)
@routes.get(KEY_SERVER_PATH + "/{keyId}")
async def get_server_keys(request: web.Request) -> web.Response:
    """GET /_matrix/key/v2/server (the keyId form is deprecated: all keys either way)."""
    return json_response(request.config_dict[KEYRING].own_keys_response())


@routes.get(KEY_QUERY_PATH + "/{serverName}")
@routes.get(KEY_QUERY_PATH + "/{serverName}/{keyId}")
async def query_server_keys(request: web.Request) -> web.Response:
    """GET /_matrix/key/v2/query/{serverName}: a notary answer for one server."""
    minimum = query_int(request, "minimum_valid_until_ts")
    key_id = request.match_info.get("keyId")
    wanted = {key_id: minimum} if key_id else {}
    criteria = {request.match_info["serverName"]: wanted}
    keys = await request.config_dict[KEYRING].notary_query(criteria, minimum)
    return json_response({"server_keys": keys})


@routes.post(KEY_QUERY_PATH)
async def bulk_query_server_keys(request: web.Request) -> web.Response:
    """POST /_matrix/key/v2/query: notary answers for several servers."""
    body = parse_model(_QueryBody, await read_json_object(request))
    criteria = {
        server: {key_id: c.minimum_valid_until_ts for key_id, c in keys.items()}
        for server, keys in body.server_keys.items()
    }
    return json_response({"server_keys": await request.config_dict[KEYRING].notary_query(criteria)})
