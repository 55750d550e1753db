"""Who is asking and with which services: the request helpers of every route package.

client/, media/, federation/ and admin/ route modules all read the app's
services and the authenticated requester the same way; they live here, below
all of them, so that media/ need not import homeserver/client/ (DESIGN.md arrows).
"""

from __future__ import annotations

from aiohttp import web

from homeserver.appkeys import SERVICES
from homeserver.errors import MatrixError
from homeserver.http import client_ip, note_user
from homeserver.services.auth import Requester
from homeserver.services.container import Services


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def access_token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Authorization header must be 'Bearer <token>'")
        return token.strip()
    # Deprecated by the spec but still sent by some clients and tools.
    return request.query.get("access_token")


async def requester(request: web.Request) -> Requester:
    svc = services(request)
    who = await svc.tokens.authenticate(access_token_of(request))
    await svc.accounts.record_seen(who, client_ip(request))
    note_user(request, who.user_id)  # for the access log line
    return who


def same_user(requester_: Requester, user_id: str) -> None:
    if requester_.user_id != user_id:
        raise MatrixError(403, "M_FORBIDDEN", "You may only do this for your own account")
