"""PUT /_matrix/federation/v1/send/{txnId}: the route of inbound transactions."""

from __future__ import annotations

from aiohttp import web

from homeserver.http import json_response, read_json_object

from federation.auth import federation_origin
from federation.transactions import TransactionHandler

TRANSACTIONS = web.AppKey("federation_transactions", TransactionHandler)

routes = web.RouteTableDef()


@routes.put("/_matrix/federation/v1/send/{txn_id}")
async def send_transaction(request: web.Request) -> web.Response:
    """Spec: https://spec.matrix.org/v1.19/server-server-api/#put_matrixfederationv1sendtxnid"""
    origin = await federation_origin(request)
    body = await read_json_object(request)
    response = await request.app[TRANSACTIONS].handle(origin, request.match_info["txn_id"], body)
    return json_response(response)
