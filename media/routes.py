"""Media routes of the Client-Server API: upload, create, download, thumbnail, config.

Spec: https://spec.matrix.org/v1.19/client-server-api/#content-repository
Bodies are streamed from request.content, never read whole (request.read()).
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from homeserver.errors import MatrixError, invalid_param, missing_param, not_found
from homeserver.http import error_response, json_response, query_bool, query_int
from homeserver.request_context import requester
from homeserver.services.clock import now_ms
from media.app_keys import MEDIA
from media.names import check_file_name, check_mxc_parts, essence, parse_content_type
from media.repository import DEFAULT_WAIT_MS, LOCAL, MediaRepository, UploadInterrupted
from media.responses import CACHE_PRIVATE, CACHE_PUBLIC, file_response
from media.thumbnailer import Source
from media.thumbnails import Request

routes = web.RouteTableDef()

CLIENT_V1 = "/_matrix/client/v1/media"
# The legacy prefix; r0 is what pre-v1.1 clients still send.
LEGACY = "/_matrix/media/{version:(?:v3|r0)}"
_MXC = "/{server_name}/{media_id}"
_THUMBNAIL_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}


def repository(request: web.Request) -> MediaRepository:
    return request.app[MEDIA]


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; UploadInterrupted when the client goes away."""
    try:
        async for chunk in request.content.iter_any():
            yield chunk
    except (ConnectionError, HttpProcessingError, asyncio.IncompleteReadError) as e:
        raise UploadInterrupted() from e


def _upload_params(request: web.Request) -> tuple[str, str | None]:
    name = request.query.get("filename")
    return parse_content_type(request.headers.get("Content-Type")), check_file_name(name) if name else None


async def _refuse_early(request: web.Request) -> web.StreamResponse | None:
    """Expect: 100-continue: refuse a bad token or a too large body before the client sends it.

    aiohttp calls this outside the middlewares, so errors are rendered here.
    """
    if request.headers.get("Expect", "").lower() != "100-continue":
        return error_response(MatrixError(417, "M_UNKNOWN", "Only Expect: 100-continue is supported"))
    try:
        await requester(request)
        repository(request).check_size(request.content_length)
    except MatrixError as e:
        return error_response(e)
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None


@routes.post("/_matrix/media/{version:(?:v3|r0)}/upload", expect_handler=_refuse_early)
async def upload(request: web.Request) -> web.Response:
    who = await requester(request)
    content_type, upload_name = _upload_params(request)
    uri = await repository(request).upload(
        who.user_id, _body(request), request.content_length, content_type, upload_name
    )
    return json_response({"content_uri": uri})


@routes.post("/_matrix/media/v1/create")
async def create(request: web.Request) -> web.Response:
    who = await requester(request)
    uri, expires = await repository(request).create(who.user_id)
    return json_response({"content_uri": uri, "unused_expires_at": expires})


@routes.put("/_matrix/media/{version:(?:v3|r0)}/upload" + _MXC, expect_handler=_refuse_early)
async def upload_to(request: web.Request) -> web.Response:
    who = await requester(request)
    server_name, media_id = _mxc(request)
    content_type, upload_name = _upload_params(request)
    await repository(request).upload_to(
        who.user_id, server_name, media_id, _body(request), request.content_length, content_type, upload_name
    )
    return json_response({})


def _mxc(request: web.Request) -> tuple[str, str]:
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    check_mxc_parts(server_name, media_id)
    return server_name, media_id


async def _find(request: web.Request, legacy: bool) -> tuple[Source, str | None]:
    """The media a download or thumbnail request names, and its upload name."""
    server_name, media_id = _mxc(request)
    timeout_ms = query_int(request, "timeout_ms", DEFAULT_WAIT_MS)
    repo = repository(request)
    if server_name == repo.server_name:
        media = await repo.local_media(media_id, timeout_ms)
        source = Source(LOCAL, media_id, media.sha256, media.content_type)
        stored_ts, upload_name = media.uploaded_ts, media.upload_name
    else:
        # The frozen legacy routes serve only what was stored before the freeze, so
        # they fetch only while the freeze has not begun (and allow_remote permits).
        fetch = not legacy or (query_bool(request, "allow_remote", True) and repo.served_before_freeze(now_ms()))
        remote = await repo.remote_media(server_name, media_id, fetch=fetch, timeout_ms=timeout_ms)
        source = Source(server_name, media_id, remote.sha256, remote.content_type)
        stored_ts, upload_name = remote.fetched_ts, remote.upload_name
    # Spec v1.11: the unauthenticated routes are frozen; media stored after the
    # freeze answers 404 there, as if it did not exist.
    if legacy and not repo.served_before_freeze(stored_ts):
        raise not_found("Media not found")
    return source, upload_name


async def _download(request: web.Request, legacy: bool) -> web.StreamResponse:
    source, upload_name = await _find(request, legacy)
    if "file_name" in request.match_info:
        upload_name = check_file_name(request.match_info["file_name"])
    path = repository(request).content.path(source.sha256)
    if not path.is_file():
        raise not_found("Media not found")
    return file_response(path, source.content_type, upload_name, CACHE_PUBLIC if legacy else CACHE_PRIVATE)


def thumbnail_request(request: web.Request) -> tuple[Request, bool]:
    """The size and method asked for, and whether an animation is wanted."""
    width = _dimension(request, "width")
    height = _dimension(request, "height")
    method = request.query.get("method", "scale")
    if method not in ("crop", "scale"):
        raise invalid_param("method must be crop or scale")
    return Request(width, height, method), query_bool(request, "animated", False)


async def _thumbnail(request: web.Request, legacy: bool) -> web.StreamResponse:
    wanted, animated = thumbnail_request(request)
    source, _ = await _find(request, legacy)
    repo = repository(request)
    served = await repo.thumbnailer.thumbnail(source, wanted, animated)
    path = repo.content.path(served.sha256)
    if not path.is_file():
        raise not_found("Media not found")
    name = thumbnail_name(served.content_type)
    # Spec: a thumbnail's Content-Disposition MUST be inline.
    return file_response(
        path, served.content_type, name, CACHE_PUBLIC if legacy else CACHE_PRIVATE, force_inline=True
    )


def thumbnail_name(content_type: str) -> str:
    return f"thumbnail.{_THUMBNAIL_EXTENSIONS.get(essence(content_type), 'bin')}"


def _dimension(request: web.Request, name: str) -> int:
    if name not in request.query:
        raise missing_param(f"Missing query parameter {name}")
    value = query_int(request, name, minimum=1)
    return value


def _config(request: web.Request) -> web.Response:
    return json_response({"m.upload.size": repository(request).media_config.max_upload_bytes})


# Authenticated media (spec v1.11).


@routes.get(CLIENT_V1 + "/download" + _MXC)
@routes.get(CLIENT_V1 + "/download" + _MXC + "/{file_name}")
async def download(request: web.Request) -> web.StreamResponse:
    await requester(request)
    return await _download(request, legacy=False)


@routes.get(CLIENT_V1 + "/thumbnail" + _MXC)
async def thumbnail(request: web.Request) -> web.StreamResponse:
    await requester(request)
    return await _thumbnail(request, legacy=False)


@routes.get(CLIENT_V1 + "/config")
async def config(request: web.Request) -> web.Response:
    await requester(request)
    return _config(request)


# The deprecated unauthenticated routes, frozen (see _find).


@routes.get(LEGACY + "/download" + _MXC)
@routes.get(LEGACY + "/download" + _MXC + "/{file_name}")
async def legacy_download(request: web.Request) -> web.StreamResponse:
    return await _download(request, legacy=True)


@routes.get(LEGACY + "/thumbnail" + _MXC)
async def legacy_thumbnail(request: web.Request) -> web.StreamResponse:
    return await _thumbnail(request, legacy=True)


@routes.get(LEGACY + "/config")
async def legacy_config(request: web.Request) -> web.Response:
    await requester(request)
    return _config(request)
