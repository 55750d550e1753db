"""Registration, login, logout, whoami and password changes.

Spec: https://spec.matrix.org/v1.19/client-server-api/#client-authentication
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from homeserver.client.base import V1, V3, Body, access_token_of, requester, services
from homeserver.errors import MatrixError, forbidden, invalid_param, missing_param
from homeserver.http import client_ip, json_response, parse_model, read_json_object
from homeserver.services.uia import DUMMY, PASSWORD, REGISTRATION_TOKEN, _identifier_user

routes = web.RouteTableDef()


class LoginBody(Body):
    type: str
    identifier: dict[str, Any] | None = None
    user: str | None = None
    password: str | None = None
    device_id: str | None = None
    initial_device_display_name: str | None = None
    # m.login.token (from POST /login/get_token).
    token: str | None = None
    refresh_token: bool = False


class RegisterBody(Body):
    username: str | None = None
    password: str | None = None
    device_id: str | None = None
    initial_device_display_name: str | None = None
    inhibit_login: bool = False
    auth: dict[str, Any] | None = None
    refresh_token: bool = False


class PasswordBody(Body):
    new_password: str
    logout_devices: bool = True
    auth: dict[str, Any] | None = None


@routes.get(V3 + "/login")
async def login_flows(request: web.Request) -> web.Response:
    # get_login_token: this server issues m.login.token itself (POST /login/get_token).
    return json_response({"flows": [{"type": "m.login.password"}, {"type": "m.login.token", "get_login_token": True}]})


@routes.post(V3 + "/login")
async def login(request: web.Request) -> web.Response:
    svc = services(request)
    svc.login_limiter.check(client_ip(request))
    body = parse_model(LoginBody, await read_json_object(request))
    if body.type == "m.login.token":
        if body.token is None:
            raise missing_param("Missing token")
        user_id = await svc.login_tokens.consume(body.token)
        session = await svc.accounts.start_session(
            user_id, body.device_id, body.initial_device_display_name, refresh=body.refresh_token
        )
        return json_response(session.login_json(svc.server_name))
    if body.type != "m.login.password":
        raise MatrixError(400, "M_UNKNOWN", f"Unsupported login type {body.type}")
    user = _identifier_user(body.model_dump())
    if user is None:
        if body.user is None and (body.identifier or {}).get("type") in (None, "m.id.user"):
            raise missing_param("Missing identifier.user")
        raise MatrixError(400, "M_UNKNOWN", "Only m.id.user identifiers are supported")
    if body.password is None:
        raise missing_param("Missing password")
    user_id = await svc.accounts.check_password(user, body.password)
    session = await svc.accounts.start_session(
        user_id, body.device_id, body.initial_device_display_name, refresh=body.refresh_token
    )
    return json_response(session.login_json(svc.server_name))


@routes.post(V3 + "/register")
async def register(request: web.Request) -> web.Response:
    """POST /register with user-interactive auth (dummy or registration token)."""
    svc = services(request)
    kind = request.query.get("kind", "user")
    if kind == "guest":
        raise forbidden("Guest access is disabled")
    if kind != "user":
        raise invalid_param("kind must be 'user' or 'guest'")
    _registration_gate(request)
    body = parse_model(RegisterBody, await read_json_object(request))
    await svc.accounts.check_registration(body.username.lower() if body.username is not None else None,
                                          body.password)
    # A first request without auth only asks for the flows; any later one must be complete.
    if body.auth is not None and body.password is None:
        raise missing_param("Missing password")
    flows = [[REGISTRATION_TOKEN]] if svc.config.registration.require_token else [[DUMMY]]
    results = await svc.uia.authenticate(body.auth, flows, "register")
    localpart = body.username.lower() if body.username else await _free_localpart(svc)
    user_id = await svc.accounts.create_account(localpart, body.password)
    if "registration_token" in results:
        await svc.uia.spend_registration_token(results["registration_token"])
    if body.inhibit_login:
        return json_response({"user_id": user_id, "home_server": svc.server_name})
    session = await svc.accounts.start_session(
        user_id, body.device_id, body.initial_device_display_name, refresh=body.refresh_token
    )
    return json_response(session.login_json(svc.server_name))


async def _free_localpart(svc) -> str:
    # Without a username the spec lets the server choose one.
    for _ in range(10):
        candidate = "user" + secrets.token_hex(4)
        if await svc.accounts.is_available(candidate):
            return candidate
    raise MatrixError(500, "M_UNKNOWN", "Could not pick a user name")


def _registration_gate(request: web.Request) -> None:
    """Every registration endpoint: refused while registration is closed, else rate-limited."""
    svc = services(request)
    if not svc.config.registration.enabled:
        raise forbidden("Registration is disabled on this server")
    svc.registration_limiter.check(client_ip(request))


@routes.get(V3 + "/register/available")
async def register_available(request: web.Request) -> web.Response:
    svc = services(request)
    # As Synapse: with registration closed, do not tell strangers which names exist.
    _registration_gate(request)
    username = request.query.get("username")
    if not username:
        raise missing_param("Missing username")
    if not await svc.accounts.is_available(username.lower()):
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
    return json_response({"available": True})


@routes.get(V1 + "/register/m.login.registration_token/validity")
async def registration_token_validity(request: web.Request) -> web.Response:
    svc = services(request)
    _registration_gate(request)
    token = request.query.get("token")
    if not token:
        raise missing_param("Missing token")
    return json_response({"valid": await svc.uia.registration_token_is_usable(token)})


@routes.post(V3 + "/logout")
async def logout(request: web.Request) -> web.Response:
    # A locked user may still log out (spec "Account locking").
    who = await services(request).tokens.authenticate(access_token_of(request), allow_locked=True)
    await services(request).accounts.logout(who)
    return json_response({})


@routes.post(V3 + "/logout/all")
async def logout_all(request: web.Request) -> web.Response:
    who = await services(request).tokens.authenticate(access_token_of(request), allow_locked=True)
    await services(request).accounts.logout_all(who)
    return json_response({})


@routes.get(V3 + "/account/whoami")
async def whoami(request: web.Request) -> web.Response:
    who = await requester(request)
    return json_response({"user_id": who.user_id, "device_id": who.device_id, "is_guest": False})


@routes.post(V3 + "/account/password")
async def change_password(request: web.Request) -> web.Response:
    svc = services(request)
    who = await requester(request)
    body = parse_model(PasswordBody, await read_json_object(request))
    # Before user-interactive auth, so that a refused password does not spend the session.
    svc.accounts.check_new_password(body.new_password)
    await svc.uia.authenticate(body.auth, [[PASSWORD]], f"password:{who.user_id}", expected_user=who.user_id)
    await svc.accounts.change_password(who.user_id, body.new_password, body.logout_devices, who.device_id)
    return json_response({})
