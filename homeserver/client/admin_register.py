"""Shared-secret registration, shaped like Synapse's, for admin tools.

`register_new_matrix_user` and other tools create accounts through it with the
`registration.shared_secret` of the configuration; it works while public
registration is closed. Synapse's docs: docs/admin_api/register_api.md
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from aiohttp import web

from homeserver.client.base import Body, add_client_routes, services
from homeserver.errors import MatrixError, forbidden
from homeserver.http import client_ip, json_response, parse_model, read_json_object

routes = web.RouteTableDef()

NONCE_LIFETIME_S = 60

# nonce -> creation time; each nonce is used at most once.
_NONCES = web.AppKey("shared_secret_nonces", dict)


class SharedSecretRegistration(Body):
    nonce: str
    username: str
    password: str
    mac: str
    admin: bool = False
    displayname: str | None = None


def install(app: web.Application) -> None:
    app[_NONCES] = {}
    add_client_routes(app.router, routes)


def _nonces(request: web.Request) -> dict[str, float]:
    nonces = request.app[_NONCES]
    now = time.monotonic()
    for nonce, created in list(nonces.items()):
        if now - created > NONCE_LIFETIME_S:
            del nonces[nonce]
    return nonces


@routes.get("/_synapse/admin/v1/register")
async def get_nonce(request: web.Request) -> web.Response:
    if not services(request).config.registration.shared_secret:
        raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
    nonce = secrets.token_hex(32)
    _nonces(request)[nonce] = time.monotonic()
    return json_response({"nonce": nonce})


@routes.post("/_synapse/admin/v1/register")
async def register_with_shared_secret(request: web.Request) -> web.Response:
    svc = services(request)
    secret = svc.config.registration.shared_secret
    if not secret:
        raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
    svc.registration_limiter.check(client_ip(request))
    body = parse_model(SharedSecretRegistration, await read_json_object(request))
    if _nonces(request).pop(body.nonce, None) is None:
        raise MatrixError(400, "M_UNKNOWN", "Unrecognised nonce")
    expected = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (body.nonce, body.username, body.password):
        expected.update(part.encode("utf-8"))
        expected.update(b"\x00")
    expected.update(b"admin" if body.admin else b"notadmin")
    if not hmac.compare_digest(expected.hexdigest(), body.mac.lower()):
        raise forbidden("HMAC incorrect")
    user_id = await svc.accounts.create_account(
        body.username.lower(), body.password, is_admin=body.admin, displayname=body.displayname
    )
    session = await svc.accounts.start_session(user_id, None, None)
    return json_response({
        "user_id": user_id,
        "access_token": session.access_token,
        "device_id": session.device_id,
        "home_server": svc.server_name,
    })
