"""Authentication of inbound federation requests (the X-Matrix Authorization header).

Spec: https://spec.matrix.org/v1.19/server-server-api/#request-authentication
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http import note_user
from homeserver.protocol.canonical import parse_json
from homeserver.protocol.signing import SignatureError
from homeserver.protocol.xmatrix import SCHEME, XMatrixError, parse_x_matrix, request_json
from homeserver.services.clock import now_ms
from federation.app_keys import FEDERATION
from federation.keys import KEYRING, KeyRing

_ORIGIN = web.RequestKey("federation_origin", str)


def _unauthorized(message: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", message)


async def _content(request: web.Request) -> Any | None:
    """The JSON body the origin signed; an empty body signs no content at all."""
    raw = await request.read()
    if not raw:
        return None
    try:
        return parse_json(raw)
    except (ValueError, UnicodeDecodeError):
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON")


async def authenticate_request(request: web.Request, keyring: KeyRing, server_name: str) -> str:
    """The origin server of a signed request, or MatrixError 401 M_UNAUTHORIZED.

    Every X-Matrix header must name the same origin; one that verifies is enough.
    The signed target is the path and query exactly as received.
    """
    headers = [
        value for value in request.headers.getall("Authorization", [])
        if value.strip().lower().startswith(SCHEME.lower() + " ")
    ]
    if not headers:
        raise _unauthorized("Missing X-Matrix Authorization header")
    auths = []
    for value in headers:
        try:
            auths.append(parse_x_matrix(value))
        except XMatrixError as exc:
            raise _unauthorized(f"Malformed X-Matrix Authorization header: {exc}")
    origins = {auth.origin for auth in auths}
    if len(origins) > 1:
        raise _unauthorized("X-Matrix Authorization headers name different origins")
    for auth in auths:
        # "If this property is included, but the value does not match the receiving
        # server's name, the receiving server must deny the request with 401."
        if auth.destination is not None and auth.destination != server_name:
            raise _unauthorized(f"This request is for {auth.destination}, not {server_name}")
    content = await _content(request)
    now = now_ms()
    failure = "no valid signature"
    for auth in auths:
        # The signed object names us even when the header omits the destination.
        signed = request_json(request.method, request.raw_path, auth.origin, server_name, content)
        signed["signatures"] = {auth.origin: {auth.key_id: auth.signature}}
        try:
            await keyring.verify_json(signed, auth.origin, now)
        except SignatureError as exc:
            failure = str(exc)
            continue
        note_user(request, auth.origin)  # the access log line names the origin server
        return auth.origin
    raise _unauthorized(f"Invalid X-Matrix signature from {auths[0].origin}: {failure}")


async def federation_origin(request: web.Request) -> str:
    """The authenticated origin of a federation request, checked once per request."""
    origin = request.get(_ORIGIN)
    if origin is None:
        keyring = request.config_dict[KEYRING]
        origin = await authenticate_request(request, keyring, keyring.server_name)
        request[_ORIGIN] = origin
        fed = request.config_dict.get(FEDERATION)
        if fed is not None:
            # The origin is up: what we hold for it is sent now, not after our backoff.
            await fed.sender.notify_destination_up(origin)
    return origin
