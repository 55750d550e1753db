"""User directory search. Spec: https://spec.matrix.org/v1.19/client-server-api/#user-directory"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from homeserver.client.base import V3, Body, requester, services
from homeserver.http import json_response, parse_model, read_json_object

routes = web.RouteTableDef()

MAX_LIMIT = 50


class SearchBody(Body):
    search_term: str = Field(max_length=256)
    limit: int = Field(10, ge=0)


@routes.post(V3 + "/user_directory/search")
async def search(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(SearchBody, await read_json_object(request))
    limit = min(body.limit, MAX_LIMIT)
    term = body.search_term.strip()
    # One more than asked tells whether the list was cut.
    found = await svc.user_directory.search(
        who.user_id, term, limit + 1, svc.config.user_directory.search_all_users
    ) if term else []
    return json_response({
        "results": [
            {k: v for k, v in (("user_id", e.user_id), ("display_name", e.display_name),
                                ("avatar_url", e.avatar_url)) if v is not None}
            for e in found[:limit]
        ],
        "limited": len(found) > limit,
    })
