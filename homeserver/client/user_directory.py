"""User directory search. Spec: https://spec.matrix.org/v1.19/client-server-api/#user-directory"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from homeserver.client.base import V3, Body, requester, services
from homeserver.http import json_response, parse_model, read_json_object

routes = web.RouteTableDef()

class SearchBody(Body):
    search_term: str = Field(max_length=256)
    limit: int = Field(10, ge=0)


@routes.post(V3 + "/user_directory/search")
async def search(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(SearchBody, await read_json_object(request))
    return json_response(await services(request).user_search.search(who.user_id, body.search_term, body.limit))
