"""End-to-end encryption key routes.

Spec: https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.client.base import V3, Body, parse_params, requester, services
from homeserver.errors import MatrixError
from homeserver.http import json_response, parse_model, read_json_object
from homeserver.services.tokens import SyncToken
from homeserver.services.uia import PASSWORD

routes = web.RouteTableDef()


class QueryBody(Body):
    device_keys: dict[str, list[str]]
    timeout: int | None = None


class ClaimBody(Body):
    one_time_keys: dict[str, dict[str, str]]
    timeout: int | None = None


class CrossSigningBody(Body):
    # Signed objects: checked by the service and stored as sent, so the raw body is what it gets.
    master_key: dict[str, Any] | None = None
    self_signing_key: dict[str, Any] | None = None
    user_signing_key: dict[str, Any] | None = None
    auth: dict[str, Any] | None = None


@routes.post(V3 + "/keys/upload")
async def upload_keys(request: web.Request) -> web.Response:
    who = await requester(request)
    body = await read_json_object(request, allow_empty=True)
    counts = await services(request).e2e_keys.upload(who.user_id, who.device_id, body)
    return json_response({"one_time_key_counts": counts})


@routes.post(V3 + "/keys/query")
async def query_keys(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(QueryBody, await read_json_object(request))
    return json_response(await services(request).e2e_keys.query(who.user_id, body.device_keys, body.timeout))


@routes.post(V3 + "/keys/claim")
async def claim_keys(request: web.Request) -> web.Response:
    await requester(request)
    body = parse_model(ClaimBody, await read_json_object(request))
    return json_response(await services(request).e2e_keys.claim(body.one_time_keys, body.timeout))


@routes.get(V3 + "/keys/changes")
async def key_changes(request: web.Request) -> web.Response:
    who = await requester(request)
    if "from" not in request.query or "to" not in request.query:
        raise MatrixError(400, "M_MISSING_PARAM", "from and to are required")
    svc = services(request)
    now = svc.sync.current_token()
    since = SyncToken.parse(request.query["from"]).capped_at(now)
    until = SyncToken.parse(request.query["to"]).capped_at(now)
    changes = await svc.e2e_keys.device_list_changes(
        who.user_id, since.events, until.events, since.device_lists, until.device_lists
    )
    return json_response({"changed": changes.changed, "left": changes.left})


@routes.post(V3 + "/keys/device_signing/upload")
async def upload_cross_signing_keys(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = await read_json_object(request)
    auth = parse_params(CrossSigningBody, body).auth
    if await svc.e2e_keys.needs_auth_for_cross_signing(who.user_id, body):
        await svc.uia.authenticate(auth, [[PASSWORD]], f"device_signing:{who.user_id}", expected_user=who.user_id)
    await svc.e2e_keys.upload_cross_signing(who.user_id, body)
    return json_response({})


@routes.post(V3 + "/keys/signatures/upload")
async def upload_signatures(request: web.Request) -> web.Response:
    who = await requester(request)
    body = await read_json_object(request)
    return json_response(await services(request).e2e_keys.upload_signatures(who.user_id, body))

