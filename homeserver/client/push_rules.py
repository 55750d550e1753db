"""Push rules and pushers. Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules-api"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.client.base import V3, Body, parse_params, requester, services
from homeserver.errors import invalid_param
from homeserver.http import json_response, read_json_object
from homeserver.services.push_rules import check_kind

routes = web.RouteTableDef()

RULE = V3 + "/pushrules/{scope}/{kind}/{rule_id}"

# An action is a string ("notify") or a tweak object; which ones are known the service checks.
Action = str | dict[str, Any]


class RuleBody(Body):
    actions: list[Action]
    # Conditions of override and underride rules: objects naming their kind (checked by the service).
    conditions: list[dict[str, Any]] = []
    # The glob of content rules, which need it.
    pattern: str | None = None


class EnabledBody(Body):
    enabled: bool


class ActionsBody(Body):
    actions: list[Action]


class PusherBody(Body):
    """POST /pushers/set. kind null deletes the pusher, so only app_id and pushkey are
    always needed; the rest the service asks of an http pusher."""

    kind: str | None
    app_id: str
    pushkey: str
    app_display_name: str | None = None
    device_display_name: str | None = None
    profile_tag: str | None = None
    lang: str | None = None
    data: dict[str, Any] | None = None
    append: bool = False


def _rule_path(request: web.Request) -> tuple[str, str]:
    """(kind, rule id) of the path; only the ``global`` scope exists."""
    if request.match_info["scope"] != "global":
        raise invalid_param("Unknown push rule scope; only 'global' exists")
    check_kind(request.match_info["kind"])
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
    body = parse_params(RuleBody, await read_json_object(request))
    await services(request).push_rules.put_rule(
        who.user_id, kind, rule_id, body.model_dump(), request.query.get("before"), request.query.get("after")
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
    body = parse_params(EnabledBody, await read_json_object(request))
    await services(request).push_rules.set_enabled(who.user_id, kind, rule_id, body.enabled)
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
    body = parse_params(ActionsBody, await read_json_object(request))
    await services(request).push_rules.set_actions(who.user_id, kind, rule_id, body.actions)
    return json_response({})


@routes.get(V3 + "/pushers")
async def get_pushers(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response({"pushers": await services(request).pushers.list(who.user_id)})


@routes.post(V3 + "/pushers/set")
async def set_pusher(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_params(PusherBody, await read_json_object(request))
    await services(request).pushers.set(who.user_id, body.model_dump())
    return json_response({})
