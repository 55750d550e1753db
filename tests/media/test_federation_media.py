"""Media over federation: our /_matrix/federation/v1/media routes, and remote media fetched
for our clients from a second in-process server (its own Services and database).

Requests between the two servers are signed with X-Matrix (sign_request with each
server's signing key) and checked by the real federation/auth.py, whose KeyRing fetches
the sender's keys from the sender's /_matrix/key/v2/server. Only the transport is the
tests' own: plain HTTP to the other in-process server instead of federation/client.py.
"""

from __future__ import annotations

import asyncio
import collections
import urllib.parse
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from homeserver.app import create_app
from homeserver.protocol.canonical import parse_json
from federation import keys as federation_keys
from homeserver.protocol.xmatrix import sign_request
from media.app import use_federation
from media.app_keys import MEDIA
from media.federation import file_name_of, parse_multipart
from tests.conftest import _with_database, make_config
from tests.helpers import Api
from tests.media.media_helpers import DOWNLOAD, SERVER, THUMBNAIL, download_raw, image_bytes, open_image, upload_ok

ORIGIN = "origin.test"
FED_DOWNLOAD = "/_matrix/federation/v1/media/download"
FED_THUMBNAIL = "/_matrix/federation/v1/media/thumbnail"


# Signed requests between the two in-process servers.


class PeerError(Exception):
    """As federation.client.FederationError: the peer answered with an HTTP error."""

    def __init__(self, status: int, errcode: str | None, body: Any):
        super().__init__(f"{status} {errcode}")
        self.status, self.errcode, self.body = status, errcode, body


class Unreachable(Exception):
    """As federation.client.FederationUnreachable."""


class SigningHttpClient:
    """FederationClient.get_stream over plain HTTP to peers at known addresses, signed
    with X-Matrix as the real client signs; counts what it asks each peer."""

    def __init__(self, server_name: str, signing_key, peers: dict[str, str]):
        self.server_name = server_name
        self.signing_key = signing_key
        self.peers = peers
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def get_json(self, destination, path, query=None, *, signed=True, timeout=None):
        status, _, body = await self.get_stream(destination, path, query, max_bytes=1 << 20)
        return parse_json(body)

    async def post_json(self, destination, path, body, *, query=None, timeout=None):
        raise Unreachable("the tests have no notary")

    async def get_stream(self, destination, path, query=None, *, max_bytes, timeout=None):
        uri = path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
        base = self.peers.get(destination)
        if base is None:
            raise Unreachable(f"no route to {destination}")
        self.requests[(destination, path)] += 1
        auth = sign_request(self.signing_key, "GET", uri, self.server_name, destination, None)
        async with self.session.get(URL(base + uri, encoded=True), headers={"Authorization": auth}) as resp:
            chunks, size = [], 0
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise Unreachable("answer too large")
            body = b"".join(chunks)
            if resp.status >= 300:
                parsed = parse_json(body) if body else None
                raise PeerError(resp.status, parsed.get("errcode") if isinstance(parsed, dict) else None, parsed)
            return resp.status, resp.headers, body


# Two servers.


@pytest.fixture
async def origin_services(tmp_path: Path, pg_admin_dsn: str, database_pool, monkeypatch):
    from homeserver.server import open_services

    monkeypatch.delenv("HOMESERVER_DATABASE", raising=False)
    database = await database_pool.take()
    try:
        config = make_config(tmp_path / "origin", _with_database(pg_admin_dsn, database), server_name=ORIGIN)
        async with open_services(config) as svc:
            yield svc
    finally:
        await database_pool.give_back(database)


class Servers:
    def __init__(self, ours: Api, origin: Api, our_client: SigningHttpClient, origin_client: SigningHttpClient):
        self.ours, self.origin = ours, origin
        self.our_client, self.origin_client = our_client, origin_client

    def origin_asked(self, media_id: str) -> int:
        """How often we asked the origin for this media (any route)."""
        return sum(n for (_, path), n in self.our_client.requests.items() if path.endswith("/" + media_id))


@pytest.fixture
async def servers(services, origin_services) -> AsyncIterator[Servers]:
    our_client = SigningHttpClient(SERVER, services.signing_key, {})
    origin_client = SigningHttpClient(ORIGIN, origin_services.signing_key, {})
    origin_app = create_app(origin_services)
    federation_keys.install(origin_app, origin_services, origin_client)
    our_app = create_app(services)
    federation_keys.install(our_app, services, our_client)
    use_federation(our_app, our_app[MEDIA], our_client)
    ours, origin = TestClient(TestServer(our_app)), TestClient(TestServer(origin_app))
    await ours.start_server()
    await origin.start_server()
    our_client.peers[ORIGIN] = str(origin.make_url(""))
    origin_client.peers[SERVER] = str(ours.make_url(""))
    try:
        yield Servers(Api(ours, services), Api(origin, origin_services), our_client, origin_client)
    finally:
        await ours.close()
        await origin.close()
        await our_client.close()
        await origin_client.close()


# A strict reading of the multipart answer, independent of media.federation's parser.


def strict_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Exactly RFC 2046 framing as we write it: no preamble, CRLF line ends, a close delimiter
    ending the body."""
    kind, _, param = content_type.partition("; ")
    assert kind == "multipart/mixed"
    name, _, boundary = param.partition("=")
    assert name == "boundary" and 1 <= len(boundary) <= 70
    delimiter = b"--" + boundary.encode()
    assert body.startswith(delimiter + b"\r\n")
    assert body.endswith(b"\r\n" + delimiter + b"--\r\n")
    inner = body[len(delimiter) + 2:-(len(delimiter) + 6)]
    parts = []
    for raw in inner.split(b"\r\n" + delimiter + b"\r\n"):
        head, sep, content = raw.partition(b"\r\n\r\n")
        assert sep
        headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n"))
        parts.append((headers, content))
    return parts


async def fed_get(servers: Servers, path: str, signed: bool = True) -> tuple[int, Any, bytes]:
    """A GET to our federation routes, as the origin server (signed) or as nobody."""
    if signed:
        try:
            status, headers, body = await servers.origin_client.get_stream(SERVER, path.split("?")[0], dict(
                urllib.parse.parse_qsl(path.partition("?")[2])) or None, max_bytes=1 << 24)
        except PeerError as e:
            return e.status, None, e.body
        return status, headers, body
    async with servers.ours.client.get(path) as resp:
        return resp.status, resp.headers, await resp.read()


# Serving our media to other servers.


async def test_federation_download_is_two_parts_with_the_upload(servers):
    alice = await servers.ours.register("alice")
    data = image_bytes(40, 30, "PNG") + bytes(range(256)) * 2000  # past one read chunk
    media_id = await upload_ok(alice, data, "image/png", filename="beach.png")
    status, headers, body = await fed_get(servers, f"{FED_DOWNLOAD}/{media_id}")
    assert status == 200
    assert headers["Content-Length"] == str(len(body))
    [(meta_headers, meta), (file_headers, content)] = strict_parts(headers["Content-Type"], body)
    assert meta_headers == {"Content-Type": "application/json"}
    assert parse_json(meta) == {}
    assert file_headers == {"Content-Type": "image/png", "Content-Disposition": "inline; filename=beach.png"}
    assert content == data
    # The fetching side's parser reads the same.
    metadata, part = parse_multipart(headers["Content-Type"], body)
    assert (metadata, bytes(part.body), part.location) == ({}, data, None)
    assert file_name_of(part.headers["Content-Disposition"]) == "beach.png"


async def test_federation_thumbnail(servers):
    alice = await servers.ours.register("alice")
    media_id = await upload_ok(alice, image_bytes(400, 300, "PNG"), "image/png")
    status, headers, body = await fed_get(servers, f"{FED_THUMBNAIL}/{media_id}?width=32&height=32&method=crop")
    assert status == 200
    [(meta_headers, meta), (file_headers, content)] = strict_parts(headers["Content-Type"], body)
    assert (meta_headers["Content-Type"], parse_json(meta)) == ("application/json", {})
    assert file_headers["Content-Disposition"].startswith("inline; filename=thumbnail.")
    assert open_image(content).size == (32, 32)
    assert open_image(content).format.lower() in file_headers["Content-Type"]
    # Parameters are checked as on the client route.
    status, _, body = await fed_get(servers, f"{FED_THUMBNAIL}/{media_id}?width=32&method=crop")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_federation_unknown_media_is_not_found(servers):
    for path in (f"{FED_DOWNLOAD}/NoSuchMedia", f"{FED_THUMBNAIL}/NoSuchMedia?width=32&height=32",
                 f"{FED_DOWNLOAD}/bad.id"):
        status, _, body = await fed_get(servers, path)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), path


async def test_federation_media_needs_a_signed_request(servers):
    alice = await servers.ours.register("alice")
    media_id = await upload_ok(alice, b"secret bytes", "text/plain")
    for path in (f"{FED_DOWNLOAD}/{media_id}", f"{FED_THUMBNAIL}/{media_id}?width=32&height=32"):
        status, _, body = await fed_get(servers, path, signed=False)
        assert (status, parse_json(body)["errcode"]) == (401, "M_UNAUTHORIZED"), path


# Fetching remote media for our clients.


async def test_remote_download_is_fetched_once_then_served_from_the_cache(servers):
    bob = await servers.origin.register("bob")
    data = image_bytes(300, 200, "PNG")
    media_id = await upload_ok_on(bob, data, "image/png", filename="cat.png")
    alice = await servers.ours.register("alice")
    status, body, headers = await download_raw(servers.ours, f"{DOWNLOAD}/{ORIGIN}/{media_id}", alice.access_token)
    assert (status, body) == (200, data)
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == "inline; filename=cat.png"
    assert servers.origin_asked(media_id) == 1
    # Cached: the download, a file name of our own and a thumbnail ask the origin nothing more.
    for path in (f"{DOWNLOAD}/{ORIGIN}/{media_id}", f"{DOWNLOAD}/{ORIGIN}/{media_id}/other.png"):
        status, body, _ = await download_raw(servers.ours, path, alice.access_token)
        assert (status, body) == (200, data)
    status, body, _ = await download_raw(
        servers.ours, f"{THUMBNAIL}/{ORIGIN}/{media_id}?width=32&height=32&method=crop", alice.access_token
    )
    assert status == 200 and open_image(body).size == (32, 32)
    assert servers.origin_asked(media_id) == 1
    row = await servers.ours.services.media.get_remote(ORIGIN, media_id)
    assert (row.origin, row.media_id, row.size, row.content_type, row.upload_name) == (
        ORIGIN, media_id, len(data), "image/png", "cat.png")


async def test_remote_thumbnail_fetches_the_media(servers):
    bob = await servers.origin.register("bob")
    media_id = await upload_ok_on(bob, image_bytes(300, 200, "JPEG"), "image/jpeg")
    alice = await servers.ours.register("alice")
    status, body, headers = await download_raw(
        servers.ours, f"{THUMBNAIL}/{ORIGIN}/{media_id}?width=96&height=96&method=scale", alice.access_token
    )
    assert status == 200 and headers["Content-Type"] in ("image/jpeg", "image/png")
    assert 96 <= max(open_image(body).size) <= 300
    assert servers.origin_asked(media_id) == 1


async def test_concurrent_remote_downloads_join_one_fetch(servers):
    bob = await servers.origin.register("bob")
    data = bytes(range(256)) * 4000
    media_id = await upload_ok_on(bob, data, "application/octet-stream")
    alice = await servers.ours.register("alice")
    results = await asyncio.gather(*(
        download_raw(servers.ours, f"{DOWNLOAD}/{ORIGIN}/{media_id}", alice.access_token) for _ in range(5)
    ))
    assert [(status, body) for status, body, _ in results] == [(200, data)] * 5
    assert servers.origin_asked(media_id) == 1


async def test_remote_not_found_is_not_found(servers):
    alice = await servers.ours.register("alice")
    r = await alice.get(f"{DOWNLOAD}/{ORIGIN}/NoSuchMedia")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await alice.get(f"{THUMBNAIL}/{ORIGIN}/NoSuchMedia?width=32&height=32")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert await servers.ours.services.media.get_remote(ORIGIN, "NoSuchMedia") is None


async def test_unreachable_origin_is_502(servers):
    alice = await servers.ours.register("alice")
    r = await alice.get(f"{DOWNLOAD}/unreachable.test/SomeMedia")
    assert (r.status, r.errcode) == (502, "M_UNKNOWN")


@pytest.mark.parametrize("config_overrides", [{"media": {"max_upload_bytes": 1000}}])
async def test_remote_media_over_our_limit_is_502_too_large(servers):
    bob = await servers.origin.register("bob")
    media_id = await upload_ok_on(bob, b"x" * 5000, "application/octet-stream")
    alice = await servers.ours.register("alice")
    r = await alice.get(f"{DOWNLOAD}/{ORIGIN}/{media_id}")
    assert (r.status, r.errcode) == (502, "M_TOO_LARGE")
    assert await servers.ours.services.media.get_remote(ORIGIN, media_id) is None


async def test_legacy_routes_do_not_fetch_after_the_freeze(servers):
    bob = await servers.origin.register("bob")
    media_id = await upload_ok_on(bob, b"hello", "text/plain")
    r = await servers.ours.request("GET", f"/_matrix/media/v3/download/{ORIGIN}/{media_id}")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert servers.origin_asked(media_id) == 0


async def upload_ok_on(user, data: bytes, content_type: str, **kw: Any) -> str:
    r = await user.post("/_matrix/media/v3/upload", raw=data, headers={"Content-Type": content_type},
                        params=kw and {"filename": kw["filename"]})
    assert r.status == 200, r
    server, media_id = r["content_uri"].removeprefix("mxc://").split("/")
    assert server == ORIGIN
    return media_id
