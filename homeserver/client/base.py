"""What every client route module needs: its services, the requester, path prefixes, Body."""

from __future__ import annotations

from typing import Any, Iterable, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from homeserver.errors import MatrixError, invalid_param, missing_param
# Re-exported: client route modules import these from here (they live below every route package).
from homeserver.request_context import access_token_of, requester, same_user, services

__all__ = [
    "V1", "V3", "Body", "access_token_of", "add_client_routes", "check_content", "parse_params", "requester",
    "route_pattern", "same_user", "services",
]

# A route of the client API under both its versions: v3, and r0 (before Matrix 1.1).
V3 = "/_matrix/client/{version:(?:v3|r0)}"
V1 = "/_matrix/client/v1"
_VERSIONED = "/_matrix/client/{version}"  # aiohttp's canonical form of V3 (the pattern of a route)
_VERSIONS = ("v3", "r0")


def add_client_routes(router: web.UrlDispatcher, routes: Iterable[web.AbstractRouteDef]) -> None:
    """``router.add_routes``, with each V3 route added once per version, as a literal path.
    aiohttp looks a request up by the literal part of a route's path before its first
    variable, then tries each route found there in turn: under V3 every client route
    shared the one prefix "/_matrix/client", 94 patterns tried for a send (50 us of a
    request's CPU); now /sync is a dictionary lookup and a send tries its room's few."""
    for route in routes:
        if isinstance(route, web.RouteDef) and route.path.startswith(V3):
            for version in _VERSIONS:
                router.add_route(route.method, f"/_matrix/client/{version}" + route.path[len(V3):],
                                 route.handler, **route.kwargs)
        else:
            route.register(router)


def route_pattern(resource: web.AbstractResource | None) -> str | None:
    """A route's pattern ("/_matrix/client/{version}/rooms/{room_id}/send/..."), the same
    for both versions of a client route (``add_client_routes``)."""
    if resource is None:
        return None
    canonical = resource.canonical
    for version in _VERSIONS:
        literal = f"/_matrix/client/{version}"
        if canonical == literal or canonical.startswith(literal + "/"):
            return _VERSIONED + canonical[len(literal):]
    return canonical


class Body(BaseModel):
    """A request body: types are strict, unknown keys are allowed (clients send extras)."""

    model_config = ConfigDict(strict=True, extra="allow")


BodyT = TypeVar("BodyT", bound=BaseModel)


def parse_params(model: type[BodyT], body: dict[str, Any]) -> BodyT:
    """As http.parse_model, but a value of the wrong type is M_INVALID_PARAM, not M_BAD_JSON:
    the answer of the APIs whose parameters were always checked one by one (push rules,
    pushers), as Synapse gives it."""
    try:
        return model.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "missing":
            raise missing_param(f"Missing parameter: {field}")
        raise invalid_param(f"Invalid parameter {field}: {first['msg']}")


def check_content(value: Any, name: str = "content") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MatrixError(400, "M_BAD_JSON", f"{name} must be a JSON object")
    return value
