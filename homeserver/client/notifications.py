"""GET /notifications.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3notifications
"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, services
from homeserver.errors import invalid_param
from homeserver.http import json_response, query_int

routes = web.RouteTableDef()

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@routes.get(V3 + "/notifications")
async def notifications(request: web.Request) -> web.Response:
    who = await requester(request)
    before = None
    token = request.query.get("from")
    if token is not None:
        if not token.isdigit() or len(token) > 18:
            raise invalid_param("Invalid from token")
        before = int(token)
    limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    assert limit is not None
    # The spec defines one filter, "highlight"; other values filter nothing.
    only_highlight = request.query.get("only") == "highlight"
    body = await services(request).notification_list.page(who.user_id, before, limit, only_highlight)
    return json_response(body)
