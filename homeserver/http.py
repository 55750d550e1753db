"""HTTP plumbing shared by every route module: errors, CORS, JSON bodies, auth.

Routes are thin (STYLE.md habit 4): they parse with the helpers here, call one
service and render JSON.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import secrets
import time
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import unquote_plus

import asyncpg
import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "Synapse-Trace-Id, Server, X-Request-Id",
}


def json_response(data: Any, status: int = 200) -> web.Response:
    # orjson writes the same compact UTF-8 JSON about 15 times faster than the standard
    # library (7 -> 0.5 ms for an initial /sync of 50 rooms); what it refuses (integers
    # beyond 64 bits, keys that are not strings) the standard library writes.
    try:
        body = orjson.dumps(data)
    except TypeError:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(
        body=body, status=status, content_type="application/json", charset="utf-8", headers=CORS_HEADERS
    )


def error_response(error: MatrixError) -> web.Response:
    return json_response(error.to_json(), status=error.status)


@dataclasses.dataclass
class RequestInfo:
    """What the access log says about a request, filled in as it is handled.

    A mutable object under one key, so that what a handler notes (the user)
    reaches the log line also through ``request.clone()``, whose mapping is a copy.
    """

    request_id: str
    started: float
    user_id: str | None = None


# aiohttp >= 3.13 warns about plain string keys on requests.
REQUEST_INFO: Any = (web.RequestKey("request_info", RequestInfo) if hasattr(web, "RequestKey")
                     else "homeserver.request_info")
# Called after each request with (request, status, seconds, response or None): the metrics hook.
RequestObserver = Callable[[web.Request, int, float, "web.StreamResponse | None"], None]
REQUEST_OBSERVER: web.AppKey[RequestObserver] = web.AppKey("request_observer", RequestObserver)
# Networks of the reverse proxies whose X-Forwarded-For is believed (config trusted_proxies).
TRUSTED_PROXIES: web.AppKey[tuple] = web.AppKey("trusted_proxies", tuple)

access_log = logging.getLogger("homeserver.access")


def note_user(request: web.Request, user_id: str) -> None:
    """Name the authenticated user (or, for federation, the origin server) in the
    request's access log line."""
    info = request.get(REQUEST_INFO)
    if info is not None:
        info.user_id = user_id


@web.middleware
async def matrix_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as a Matrix error; answer CORS preflights; log one line per request."""
    info = RequestInfo(request_id=secrets.token_hex(6), started=time.perf_counter())
    request[REQUEST_INFO] = info
    # 499, nginx's code for it: the client went away (a long poll it gave up) before the answer.
    status = 499
    response: web.StreamResponse | None = None
    try:
        response = await _answer(request, handler, info)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = info.request_id
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        seconds = time.perf_counter() - info.started
        access_log.info(
            "%s %s %s %d %.1fms client=%s user=%s", info.request_id, request.method, loggable_path(request),
            status, seconds * 1000, client_ip(request), info.user_id or "-",
        )
        observer = request.app.get(REQUEST_OBSERVER)
        if observer is not None:
            observer(request, status, seconds, response)


async def _answer(request: web.Request, handler: Handler, info: RequestInfo) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        return await handler(request)
    except MatrixError as e:
        return error_response(e)
    except web.HTTPRequestEntityTooLarge:
        return error_response(MatrixError(413, "M_TOO_LARGE", "Request body too large"))
    except web.HTTPNotFound:
        return error_response(MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request"))
    except web.HTTPMethodNotAllowed:
        return error_response(MatrixError(405, "M_UNRECOGNIZED", "Method not allowed"))
    except web.HTTPException as e:
        if e.status >= 400:
            return error_response(MatrixError(e.status, "M_UNKNOWN", e.reason or "Error"))
        raise
    except (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError):
        # JSON and URLs may carry U+0000, which PostgreSQL text cannot hold: bad input, not a crash.
        return error_response(MatrixError(400, "M_INVALID_PARAM", "Text may not contain U+0000"))
    except Exception:
        log.exception("request %s %s failed (id %s)", request.method, request.path, info.request_id)
        return error_response(
            MatrixError(500, "M_UNKNOWN", f"Internal server error (request {info.request_id})")
        )


# Query parameters whose values are secrets: never written to a log.
_SECRET_PARAMETERS = frozenset(("access_token", "token", "logintoken", "client_secret", "password"))
MAX_LOGGED_PATH = 1000


def loggable_path(request: web.Request) -> str:
    """The path as the client sent it, with the values of secret query parameters removed.

    Names are compared decoded, as the server reads them: ``access%5Ftoken`` is the token too.
    """
    path, _, query = request.raw_path.partition("?")
    if query:
        pairs = []
        for pair in query.split("&"):
            name, equals, _value = pair.partition("=")
            if equals and unquote_plus(name).lower() in _SECRET_PARAMETERS:
                pair = f"{name}=<redacted>"
            pairs.append(pair)
        path = path + "?" + "&".join(pairs)
    return path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH] + "..."


async def read_json_object(request: web.Request, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; M_NOT_JSON when it is not JSON at all."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, "M_NOT_JSON", "Request body is empty; expected a JSON object")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON")
    if b"\\ud" in raw or b"\\uD" in raw:
        # An escaped lone surrogate parses but is no Unicode text: it could be neither
        # stored nor sent on. Escaped surrogate pairs (emoji) pass this check.
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise MatrixError(400, "M_NOT_JSON", "Content not JSON: lone surrogate in a string")
    if not isinstance(body, dict):
        raise bad_json("Request body must be a JSON object")
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_model(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    """Validate a body against a strict pydantic model, naming the bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "missing":
            raise missing_param(f"Missing parameter: {field}")
        raise bad_json(f"Invalid parameter {field}: {first['msg']}")


async def read_model(request: web.Request, model: type[ModelT], allow_empty: bool = False) -> ModelT:
    return parse_model(model, await read_json_object(request, allow_empty=allow_empty))


def query_int(
    request: web.Request, name: str, default: int | None = None, minimum: int = 0, maximum: int | None = None
) -> int | None:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid_param(f"Query parameter {name} must be an integer")
    if number < minimum:
        raise invalid_param(f"Query parameter {name} must be at least {minimum}")
    if maximum is not None:
        number = min(number, maximum)
    return number


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise invalid_param(f"Query parameter {name} must be true or false")


def client_ip(request: web.Request) -> str:
    """The client's address: the peer, or, when the peer is one of the configured
    ``trusted_proxies``, the right-most address in X-Forwarded-For that is not one of them.

    Each proxy appends the address it was reached from, so everything to the left of
    the right-most untrusted entry may be forged by the client and is ignored.
    Rate limits and the device list's last-seen addresses use this.
    """
    peer = request.remote or "unknown"
    trusted = request.app.get(TRUSTED_PROXIES, ())
    if not trusted or not _in_networks(peer, trusted):
        return peer
    hops = [hop.strip() for header in request.headers.getall("X-Forwarded-For", [])
            for hop in header.split(",") if hop.strip()]
    address = peer
    for hop in reversed(hops):
        if _parse_ip(hop) is None:
            # Not an address ("unknown", garbage): what lies left of it cannot be trusted.
            break
        address = hop
        if not _in_networks(hop, trusted):
            break
    return address


def trusted_networks(entries: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in_networks(text: str, networks: tuple) -> bool:
    address = _parse_ip(text)
    return address is not None and any(address.version == n.version and address in n for n in networks)
