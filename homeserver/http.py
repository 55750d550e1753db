"""HTTP plumbing shared by every route module: errors, CORS, JSON bodies, auth.

Routes are thin (STYLE.md habit 4): they parse with the helpers here, call one
service and render JSON.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
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
    "Access-Control-Expose-Headers": "Synapse-Trace-Id, Server",
}


def json_response(data: Any, status: int = 200) -> web.Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return web.Response(
        text=body, status=status, content_type="application/json", headers=CORS_HEADERS
    )


def error_response(error: MatrixError) -> web.Response:
    return json_response(error.to_json(), status=error.status)


@web.middleware
async def matrix_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as a Matrix error; answer CORS preflights."""
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
        request_id = secrets.token_hex(4)
        log.exception("request %s %s failed (id %s)", request.method, request.path, request_id)
        return error_response(
            MatrixError(500, "M_UNKNOWN", f"Internal server error (request {request_id})")
        )


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
    """The client's address; behind a reverse proxy, the X-Forwarded-For it sets."""
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and request.remote in ("127.0.0.1", "::1"):
        return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"
