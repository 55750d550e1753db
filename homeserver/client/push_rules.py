"""Push rules and pushers. Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules-api"""

from __future__ import annotations

from aiohttp import web

from homeserver.client.base import V3, requester, services
from homeserver.errors import invalid_param
from homeserver.http import json_response, read_json_object

routes = web.RouteTableDef()

RULE = V3 + "/pushrules/{scope}/{kind}/{rule_id}"


def _rule_path(request: web.Request) -> tuple[str, str]:
    """(kind, rule id) of the path; only the ``global`` scope exists."""
    if request.match_info["scope"] != "global":
        raise invalid_param("Unknown push rule scope; only 'global' exists")
    return request.match_info["kind"], request.match_info["rule_id"]


@routes.get(V3 + "/pushrules/")
@routes.get(V3 + "/pushrules")
async def get_all(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response({"global": await services(request).push_rules.ruleset(who.user_id)})


@routes.get(V3 + "/pushrules/global/")
async def get_global(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response(await services(request).push_rules.ruleset(who.user_id))


@routes.get(RULE)
async def get_rule(request: web.Request) -> web.Response:
    who = await requester(request)
    kind, rule_id = _rule_path(request)
    return json_response(await services(request).push_rules.get_rule(who.user_id, kind, rule_id))


@routes.put(RULE)
async def put_rule(request: web.Request) -> web.Response:
    who = await requester(request)
    kind, rule_id = _rule_path(request)
    body = await read_json_object(request)
    await services(request).push_rules.put_rule(
        who.user_id, kind, rule_id, body, request.query.get("before"), request.query.get("after")
    )
    return json_response({})


@routes.delete(RULE)
async def delete_rule(request: web.Request) -> web.Response:
    who = await requester(request)
    kind, rule_id = _rule_path(request)
    await services(request).push_rules.delete_rule(who.user_id, kind, rule_id)
    return json_response({})


@routes.get(RULE + "/enabled")
async def get_enabled(request: web.Request) -> web.Response:
    who = await requester(request)
    kind, rule_id = _rule_path(request)
    rule = await services(request).push_rules.get_rule(who.user_id, kind, rule_id)
    return json_response({"enabled": rule["enabled"]})


@routes.put(RULE + "/enabled")
async def put_enabled(request: web.Request) -> web.Response:
    who = await requester(request)
    kind, rule_id = _rule_path(request)
    body = await read_json_object(request)
    await services(request).push_rules.set_enabled(who.user_id, kind, rule_id, body.get("enabled"))
    return json_response({})


@routes.get(RULE + "/actions")
async def get_actions(request: web.Request) -> web.Response:
    who = await requester(request)
    kind, rule_id = _rule_path(request)
    rule = await services(request).push_rules.get_rule(who.user_id, kind, rule_id)
    return json_response({"actions": rule["actions"]})


@routes.put(RULE + "/actions")
async def put_actions(request: web.Request) -> web.Response:
    who = await requester(request)
    kind, rule_id = _rule_path(request)
    body = await read_json_object(request)
    await services(request).push_rules.set_actions(who.user_id, kind, rule_id, body.get("actions"))
    return json_response({})


@routes.get(V3 + "/pushers")
async def get_pushers(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response({"pushers": await services(request).pushers.list(who.user_id)})


@routes.post(V3 + "/pushers/set")
async def set_pusher(request: web.Request) -> web.Response:
    who = await requester(request)
    body = await read_json_object(request)
    await services(request).pushers.set(who.user_id, body)
    return json_response({})
