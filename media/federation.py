"""Media over federation: serving our media to other servers, fetching theirs for our clients.

Spec: https://spec.matrix.org/v1.19/server-server-api/#content-repository

Both federation routes answer ``multipart/mixed`` with exactly two parts: an
``application/json`` metadata object (always ``{}`` for now) and the file, here
always its bytes (we never redirect). The file is streamed from disk in chunks
with a Content-Length known in advance.

Fetching reads the same answer from the media's origin through the
FederationClient (``get_stream``), or follows a ``Location`` part with the
SafeFetcher's address checks. Servers without these routes (404
M_UNRECOGNIZED) are asked on the legacy ``/_matrix/media/v3/download`` route
instead. Failures are answered as Synapse does: 404 M_NOT_FOUND when the origin
says the media does not exist, else 502 (M_TOO_LARGE for media over our limit,
M_UNKNOWN otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import secrets
import urllib.parse
from typing import Any, AsyncIterator, Mapping, Protocol

from aiohttp import web
from multidict import CIMultiDict

from homeserver.config import Config
from homeserver.errors import MatrixError, not_found
from homeserver.http import query_int
from homeserver.protocol.canonical import parse_json
from media.app_keys import MEDIA
from media.names import DEFAULT_CONTENT_TYPE, check_file_name, check_mxc_parts, essence, parse_content_type
from media.repository import DEFAULT_WAIT_MS, LOCAL
from media.responses import content_disposition
from media.routes import thumbnail_name, thumbnail_request
from media.safe_fetch import AddressPolicy, BodyTooLarge, FetchError, SafeFetcher
from media.thumbnailer import Source

log = logging.getLogger(__name__)

FEDERATION_MEDIA = "/_matrix/federation/v1/media"
_CHUNK = 256 * 1024
# Room for the multipart framing (boundaries, part headers, metadata) on top of
# the largest file we accept.
_FRAMING_ALLOWANCE = 64 * 1024
# RFC 2046 section 5.1.1: 1 to 70 characters of this set, not ending in a space.
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")

routes = web.RouteTableDef()


# Serving: GET /_matrix/federation/v1/media/{download,thumbnail}/{mediaId}


async def _origin(request: web.Request) -> str:
    """The authenticated requesting server (engineer C's federation/auth.py)."""
    try:
        from federation.auth import federation_origin
    except ImportError:
        # Fail closed until request authentication exists.
        raise MatrixError(401, "M_UNAUTHORIZED", "Federation request authentication is not available")
    return await federation_origin(request)


def _media_id(request: web.Request) -> str:
    media_id = request.match_info["media_id"]
    check_mxc_parts(request.app[MEDIA].server_name, media_id)
    return media_id


@routes.get(FEDERATION_MEDIA + "/download/{media_id}")
async def federation_download(request: web.Request) -> web.StreamResponse:
    await _origin(request)
    repo = request.app[MEDIA]
    timeout_ms = query_int(request, "timeout_ms", DEFAULT_WAIT_MS)
    media = await repo.local_media(_media_id(request), timeout_ms)
    return await send_multipart(
        request, repo.content.path(media.sha256), media.content_type,
        content_disposition(media.content_type, media.upload_name),
    )


@routes.get(FEDERATION_MEDIA + "/thumbnail/{media_id}")
async def federation_thumbnail(request: web.Request) -> web.StreamResponse:
    await _origin(request)
    repo = request.app[MEDIA]
    wanted, animated = thumbnail_request(request)
    media_id = _media_id(request)
    media = await repo.local_media(media_id, query_int(request, "timeout_ms", DEFAULT_WAIT_MS))
    served = await repo.thumbnailer.thumbnail(
        Source(LOCAL, media_id, media.sha256, media.content_type), wanted, animated
    )
    return await send_multipart(
        request, repo.content.path(served.sha256), served.content_type,
        content_disposition(served.content_type, thumbnail_name(served.content_type), force_inline=True),
    )


def _part_head(boundary: str, headers: Mapping[str, str]) -> bytes:
    lines = [f"--{boundary}"] + [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def send_multipart(
    request: web.Request, path: os.PathLike, content_type: str, disposition: str
) -> web.StreamResponse:
    """The two-part answer, the file streamed from disk."""
    try:
        file = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise not_found("Media not found")
    try:
        size = os.fstat(file.fileno()).st_size
        boundary = secrets.token_hex(16)
        head = (
            _part_head(boundary, {"Content-Type": "application/json"}) + b"{}\r\n"
            + _part_head(boundary, {"Content-Type": content_type, "Content-Disposition": disposition})
        )
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        response = web.StreamResponse(headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
        response.content_length = len(head) + size + len(tail)
        await response.prepare(request)
        await response.write(head)
        remaining = size
        while remaining > 0:
            chunk = await asyncio.to_thread(file.read, min(_CHUNK, remaining))
            if not chunk:
                break  # the file shrank: the peer sees a short body and drops it
            remaining -= len(chunk)
            await response.write(chunk)
        if remaining == 0:
            await response.write(tail)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(file.close)


# Parsing the answer.


class MultipartError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class MediaPart:
    """The second part of a federation media answer: bytes, or where to get them."""

    headers: CIMultiDict
    body: memoryview
    location: str | None


def boundary_of(content_type: str | None) -> str:
    if not content_type:
        raise MultipartError("no Content-Type")
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/mixed":
        raise MultipartError(f"not multipart/mixed: {kind.strip()!r}")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not _BOUNDARY.match(value):
                raise MultipartError("invalid boundary")
            return value
    raise MultipartError("no boundary")


def _parse_headers(raw: bytes) -> CIMultiDict:
    headers: CIMultiDict = CIMultiDict()
    for line in raw.split(b"\r\n") if raw else []:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or not name.isascii():
            raise MultipartError("malformed part header")
        headers.add(name.decode("ascii"), value.strip().decode("latin-1"))
    return headers


def parse_multipart(content_type: str | None, body: bytes) -> tuple[dict[str, Any], MediaPart]:
    """The metadata object and the media part of a multipart/mixed answer (RFC 2046)."""
    delimiter = b"--" + boundary_of(content_type).encode("ascii")
    view = memoryview(body)
    # The first delimiter opens the body or follows a CRLF (after a preamble, or at
    # the very start, as Synapse writes it).
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise MultipartError("no opening boundary")
        position = start + 2 + len(delimiter)
    parts: list[tuple[CIMultiDict, memoryview]] = []
    while True:
        if body.startswith(b"--", position):
            break  # the close delimiter; an epilogue after it is ignored
        end_of_line = body.find(b"\r\n", position)
        if end_of_line < 0 or body[position:end_of_line].strip(b" \t"):
            raise MultipartError("garbage after a boundary")
        part_start = end_of_line + 2
        part_end = body.find(b"\r\n" + delimiter, part_start)
        if part_end < 0:
            raise MultipartError("unterminated part")
        if body.startswith(b"\r\n", part_start):
            headers, content_start = CIMultiDict(), part_start + 2
        else:
            head_end = body.find(b"\r\n\r\n", part_start, part_end + 2)
            if head_end < 0:
                raise MultipartError("part without a header end")
            headers, content_start = _parse_headers(body[part_start:head_end]), head_end + 4
        parts.append((headers, view[content_start:part_end]))
        position = part_end + 2 + len(delimiter)
    if len(parts) != 2:
        raise MultipartError(f"{len(parts)} parts instead of 2")
    (meta_headers, meta_body), (media_headers, media_body) = parts
    if essence(meta_headers.get("Content-Type", "")) != "application/json":
        raise MultipartError("the first part is not application/json")
    try:
        metadata = parse_json(bytes(meta_body))
    except ValueError as e:
        raise MultipartError(f"metadata is not JSON: {e}")
    if not isinstance(metadata, dict):
        raise MultipartError("metadata is not a JSON object")
    return metadata, MediaPart(media_headers, media_body, media_headers.get("Location"))


def file_name_of(disposition: str | None) -> str | None:
    """The file name a Content-Disposition names (filename* preferred), if it is usable."""
    if not disposition:
        return None
    names: dict[str, str] = {}
    for param in disposition.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "filename*":
            charset, _, rest = value.partition("'")
            _, _, encoded = rest.partition("'")
            if charset.lower() == "utf-8":
                names[key] = urllib.parse.unquote(encoded, errors="strict")
        elif key == "filename":
            names[key] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    name = names.get("filename*") or names.get("filename")
    try:
        return check_file_name(name) if name else None
    except MatrixError:
        return None


def _content_type(value: str | None) -> str:
    try:
        return parse_content_type(value)
    except MatrixError:
        return DEFAULT_CONTENT_TYPE


# Fetching.


@dataclasses.dataclass
class RemoteFile:
    content_type: str
    upload_name: str | None
    chunks: AsyncIterator[bytes]


class MediaFederationClient(Protocol):
    """The part of federation.client.FederationClient used here."""

    async def get_stream(self, destination: str, path: str, query: dict | None = None, *,
                         max_bytes: int, timeout: float | None = None) -> tuple[int, Mapping[str, str], bytes]: ...


def _fetch_failed() -> MatrixError:
    return MatrixError(502, "M_UNKNOWN", "Failed to fetch remote media")


def _too_large(limit: int) -> MatrixError:
    return MatrixError(502, "M_TOO_LARGE", f"Remote media is larger than {limit} bytes")


async def _chunks(data: memoryview) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), _CHUNK):
        yield data[offset:offset + _CHUNK]


class _PeerError(Exception):
    """The origin answered with an HTTP error."""

    def __init__(self, status: int, errcode: str | None):
        super().__init__(f"{status} {errcode}")
        self.status = status
        self.errcode = errcode


class FederationMediaFetcher:
    """Fetches remote media from its origin; the repository's remote_fetcher."""

    def __init__(self, client: MediaFederationClient, config: Config):
        self.client = client
        self.max_bytes = config.media.max_upload_bytes
        self.timeout = config.federation.request_timeout_seconds
        federation = config.federation
        self.location_fetcher = SafeFetcher(
            AddressPolicy(federation.ip_range_allowlist, federation.ip_range_denylist),
            max_bytes=self.max_bytes, user_agent="homeserver media",
            connect_timeout_s=federation.request_timeout_seconds,
        )

    async def close(self) -> None:
        await self.location_fetcher.close()

    @contextlib.asynccontextmanager
    async def open(self, origin: str, media_id: str, timeout_ms: int = DEFAULT_WAIT_MS) -> AsyncIterator[RemoteFile]:
        """The remote media's bytes; MatrixError (404 or 502) when it cannot be had."""
        query = {"timeout_ms": str(timeout_ms)}
        try:
            status, headers, body = await self._get(
                origin, f"{FEDERATION_MEDIA}/download/{urllib.parse.quote(media_id, safe='')}", query,
                self.max_bytes + _FRAMING_ALLOWANCE,
            )
        except _PeerError as e:
            if e.status not in (400, 404) or e.errcode != "M_UNRECOGNIZED":
                raise self._answer(origin, media_id, e)
            # A server from before v1.11: its legacy route, without fetching further itself.
            async with self._open_legacy(origin, media_id, query) as remote:
                yield remote
            return
        if 300 <= status < 400 and "Location" in headers:
            # Not the spec's way (a Location part), but where a redirect leads is clear.
            async with self._open_location(origin, media_id, headers["Location"]) as remote:
                yield remote
            return
        try:
            _, part = parse_multipart(headers.get("Content-Type"), body)
        except MultipartError as e:
            log.warning("remote media %s/%s: bad multipart answer: %s", origin, media_id, e)
            raise _fetch_failed()
        if part.location is not None:
            async with self._open_location(origin, media_id, part.location) as remote:
                yield remote
            return
        if len(part.body) > self.max_bytes:
            raise _too_large(self.max_bytes)
        yield RemoteFile(
            _content_type(part.headers.get("Content-Type")),
            file_name_of(part.headers.get("Content-Disposition")), _chunks(part.body),
        )

    @contextlib.asynccontextmanager
    async def _open_legacy(self, origin: str, media_id: str, query: dict[str, str]) -> AsyncIterator[RemoteFile]:
        path = (
            f"/_matrix/media/v3/download/{urllib.parse.quote(origin, safe='')}"
            f"/{urllib.parse.quote(media_id, safe='')}"
        )
        try:
            status, headers, body = await self._get(
                origin, path, {**query, "allow_remote": "false"}, self.max_bytes + 1
            )
        except _PeerError as e:
            raise self._answer(origin, media_id, e)
        if 300 <= status < 400:
            if "Location" not in headers:
                raise _fetch_failed()
            async with self._open_location(origin, media_id, headers["Location"]) as remote:
                yield remote
            return
        if len(body) > self.max_bytes:
            raise _too_large(self.max_bytes)
        yield RemoteFile(
            _content_type(headers.get("Content-Type")), file_name_of(headers.get("Content-Disposition")),
            _chunks(memoryview(body)),
        )

    @contextlib.asynccontextmanager
    async def _open_location(self, origin: str, media_id: str, url: str) -> AsyncIterator[RemoteFile]:
        try:
            async with self.location_fetcher.open(url) as response:
                yield RemoteFile(
                    _content_type(response.headers.get("Content-Type")),
                    file_name_of(response.headers.get("Content-Disposition")), response.chunks(),
                )
        except FetchError as e:
            log.warning("remote media %s/%s: redirect to %s failed: %s", origin, media_id, url, e)
            raise _too_large(self.max_bytes) if isinstance(e, BodyTooLarge) else _fetch_failed()

    async def _get(
        self, origin: str, path: str, query: dict[str, str], max_bytes: int
    ) -> tuple[int, Mapping[str, str], bytes]:
        """get_stream; _PeerError for an HTTP error answer, 502 when the origin is unreachable."""
        try:
            status, headers, body = await self.client.get_stream(
                origin, path, query, max_bytes=max_bytes, timeout=self.timeout
            )
        except Exception as e:
            status = getattr(e, "status", None)
            if isinstance(status, int):  # federation.client.FederationError: the peer answered
                raise _PeerError(status, getattr(e, "errcode", None))
            log.warning("remote media from %s: %r", origin, e)
            raise _fetch_failed()
        if not 200 <= status < 400:
            raise _PeerError(status, _errcode(body))
        return status, headers, body

    def _answer(self, origin: str, media_id: str, error: _PeerError) -> MatrixError:
        log.info("remote media %s/%s: origin answered %s %s", origin, media_id, error.status, error.errcode)
        if error.status == 404:
            return not_found("Media not found")
        if error.errcode == "M_TOO_LARGE":
            return _too_large(self.max_bytes)
        return _fetch_failed()


def _errcode(body: bytes) -> str | None:
    try:
        parsed = parse_json(body)
    except ValueError:
        return None
    errcode = parsed.get("errcode") if isinstance(parsed, dict) else None
    return errcode if isinstance(errcode, str) else None
