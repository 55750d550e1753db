"""Helpers for the media tests: uploads, images made with Pillow, raw HTTP, what is on disk."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from PIL import Image

from tests.helpers import Api, Response, User

UPLOAD = "/_matrix/media/v3/upload"
CREATE = "/_matrix/media/v1/create"
DOWNLOAD = "/_matrix/client/v1/media/download"
THUMBNAIL = "/_matrix/client/v1/media/thumbnail"
LEGACY_DOWNLOAD = "/_matrix/media/v3/download"
LEGACY_THUMBNAIL = "/_matrix/media/v3/thumbnail"
SERVER = "test.local"


async def upload(
    user: User, data: bytes, content_type: str | None = "application/octet-stream",
    filename: str | None = None,
) -> Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    params = {"filename": filename} if filename is not None else None
    return await user.post(UPLOAD, raw=data, headers=headers, params=params)


async def upload_ok(user: User, data: bytes, content_type: str = "application/octet-stream", **kw: Any) -> str:
    """Upload and return the media id."""
    r = await upload(user, data, content_type, **kw)
    assert r.status == 200, r
    server, media_id = r["content_uri"].removeprefix("mxc://").split("/")
    assert server == SERVER
    return media_id


async def download_raw(api: Api, path: str, token: str | None = None, headers: dict[str, str] | None = None):
    """(status, body bytes, headers) of a GET, the body unparsed."""
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    async with api.client.get(path, headers=all_headers) as resp:
        return resp.status, await resp.read(), resp.headers


def image_bytes(width: int, height: int, fmt: str = "JPEG", mode: str = "RGB", color: Any = (180, 60, 30), **save: Any) -> bytes:
    image = Image.new(mode, (width, height), color)
    # A gradient, so that encoders and resamplers have something to work on.
    for x in range(0, width, max(1, width // 16)):
        for y in range(0, height, max(1, height // 16)):
            image.putpixel((x, y), (x % 256, y % 256, 128) if mode == "RGB" else image.getpixel((0, 0)))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def media_root(services: Any) -> Path:
    return services.config.data_dir / "media"


def stored_files(services: Any) -> list[Path]:
    return sorted(p for p in (media_root(services) / "content").rglob("*") if p.is_file())


def temp_files(services: Any) -> list[Path]:
    return sorted((media_root(services) / "tmp").iterdir())


async def media_rows(services: Any) -> int:
    return await services.db.fetchval("SELECT count(*) FROM media")


async def raw_http(api: Api, head: bytes, body: bytes = b"", close_after: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP connection to the test server and send bytes as they are."""
    reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
    writer.write(head + body)
    await writer.drain()
    if close_after:
        writer.close()
        await writer.wait_closed()
    return reader, writer


async def read_status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status code and the raw response (headers and whatever body came) of a raw request."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head


def request_head(method: str, path: str, token: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", f"Authorization: Bearer {token}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def raw_get(api: Api, path: str, token: str | None = None) -> tuple[int, bytes]:
    """A GET sent byte for byte as given (no client-side normalisation of '..' or '%2F')."""
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    reader, writer = await raw_http(api, ("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
