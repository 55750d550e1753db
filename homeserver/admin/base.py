"""What every admin route module needs: the admin check, the services, query parsing."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from homeserver.errors import forbidden, invalid_param
from homeserver.http import read_json_object
from homeserver.request_context import requester
from homeserver.services.admin_container import AdminServices
from homeserver.services.auth import Requester

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

ADMIN_SERVICES = web.AppKey("admin_services", AdminServices)


class AdminBody(BaseModel):
    """A request body of the admin API: strict types, unknown keys allowed (synapse-admin
    sends back whole records, with fields of its own)."""

    model_config = ConfigDict(strict=True, extra="allow")


def admin_services(request: web.Request) -> AdminServices:
    return request.app[ADMIN_SERVICES]


async def require_admin(request: web.Request) -> Requester:
    """The requester, a server admin: 401 without a valid token, 403 M_FORBIDDEN for others."""
    who = await requester(request)
    if not who.is_admin:
        raise forbidden("You are not a server admin")
    return who


async def body_of(request: web.Request) -> dict[str, Any]:
    """The JSON object body; an empty body reads as {} (several tools send none)."""
    return await read_json_object(request, allow_empty=True)


def query_int(request: web.Request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise invalid_param(f"Query parameter {name!r} must be a non-negative integer")
    value = int(raw)
    return min(value, maximum) if maximum is not None else value


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise invalid_param(f"Boolean query parameter {name!r} must be one of ['true', 'false']")


def query_choice(request: web.Request, name: str, allowed: Any, default: str) -> str:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise invalid_param(f"Unknown value for {name}: {raw!r}")
    return raw


def page(request: web.Request) -> tuple[int, int]:
    """(from, limit) of a list request."""
    return query_int(request, "from", 0), query_int(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)


def descending(request: web.Request) -> bool:
    return query_choice(request, "dir", ("f", "b"), "f") == "b"
