"""What every client route module needs: its services, the requester, path prefixes."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from homeserver.appkeys import SERVICES
from homeserver.errors import MatrixError
from homeserver.http import client_ip
from homeserver.services.auth import Requester
from homeserver.services.container import Services

V3 = "/_matrix/client/{version:(?:v3|r0)}"
V1 = "/_matrix/client/v1"


class Body(BaseModel):
    """A request body: types are strict, unknown keys are allowed (clients send extras)."""

    model_config = ConfigDict(strict=True, extra="allow")


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
    return who


def same_user(requester_: Requester, user_id: str) -> None:
    if requester_.user_id != user_id:
        raise MatrixError(403, "M_FORBIDDEN", "You may only do this for your own account")


def check_content(value: Any, name: str = "content") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MatrixError(400, "M_BAD_JSON", f"{name} must be a JSON object")
    return value
