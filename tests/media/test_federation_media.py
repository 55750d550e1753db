"""Media over federation: our /_matrix/federation/v1/media routes, and remote media fetched
for our clients from a second in-process server (its own Services and database).

Both servers listen on HTTPS at 127.0.0.1:<port> (their server names), talk through the
real federation/client.py (verify_certificates: false, 127.0.0.1 allowed) and check each
other's X-Matrix signatures with the real federation/auth.py, whose KeyRing fetches the
sender's keys from its /_matrix/key/v2/server.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.parse
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import nacl.signing
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from federation import keys as federation_keys
from federation.client import FederationClient, FederationError
from homeserver.app import create_app
from homeserver.protocol.canonical import parse_json
from media.app import use_federation
from media.app_keys import MEDIA
from media.federation import file_name_of, parse_multipart
from tests.conftest import _with_database, make_config
from tests.federation.tls_cert import make_self_signed_certificate
from tests.helpers import Api, User
from tests.media.media_helpers import DOWNLOAD, THUMBNAIL, download_raw, image_bytes, open_image

FED_DOWNLOAD = "/_matrix/federation/v1/media/download"
FED_THUMBNAIL = "/_matrix/federation/v1/media/thumbnail"
FEDERATION = {"verify_certificates": False, "ip_range_allowlist": ["127.0.0.1/32"], "trusted_key_servers": []}


def _bound_socket() -> socket.socket:
    """A listening address known before the server (and its server name) exists."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _name(sock: socket.socket) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


async def _start_tls(app: web.Application, sock: socket.socket, tls_dir: Path) -> TestServer:
    pair = make_self_signed_certificate(tls_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.certificate, pair.private_key)
    server = TestServer(app, port=sock.getsockname()[1], socket_factory=lambda *_: sock)
    await server.start_server(ssl=context)
    return server


def _client(services) -> FederationClient:
    return FederationClient(services.config.server_name, services.signing_key, services.config.federation)


@pytest.fixture
def our_socket() -> socket.socket:
    sock = _bound_socket()
    yield sock
    sock.close()


@pytest.fixture
def extra_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def config_overrides(our_socket, extra_config) -> dict[str, Any]:
    """Our server (the `services` fixture) is named after its HTTPS address."""
    return {"server_name": _name(our_socket), "federation": FEDERATION, **extra_config}


@pytest.fixture
async def origin_services(tmp_path: Path, pg_admin_dsn: str, database_pool, monkeypatch):
    from homeserver.server import open_services

    monkeypatch.delenv("HOMESERVER_DATABASE", raising=False)
    sock = _bound_socket()
    database = await database_pool.take()
    try:
        config = make_config(tmp_path / "origin", _with_database(pg_admin_dsn, database),
                             server_name=_name(sock), federation=FEDERATION)
        async with open_services(config) as svc:
            svc.test_socket = sock
            yield svc
    finally:
        sock.close()
        await database_pool.give_back(database)


class Servers:
    def __init__(self, ours: Api, origin: Api, origin_client: FederationClient, origin_requests: list[str]):
        self.ours, self.origin = ours, origin
        self.our_name = ours.services.config.server_name
        self.origin_name = origin.services.config.server_name
        self.origin_client = origin_client
        self.origin_requests = origin_requests

    def origin_asked(self, media_id: str) -> int:
        """How often the origin was asked for this media (any route)."""
        return sum(1 for path in self.origin_requests if media_id in path)


@pytest.fixture
async def servers(services, origin_services, our_socket, tmp_path) -> AsyncIterator[Servers]:
    our_client, origin_client = _client(services), _client(origin_services)
    origin_app = create_app(origin_services)
    federation_keys.install(origin_app, origin_services, origin_client)
    origin_requests: list[str] = []

    async def count(request: web.Request, _response) -> None:
        if request.path.startswith(("/_matrix/federation/v1/media/", "/_matrix/media/v3/download")):
            origin_requests.append(request.raw_path)

    origin_app.on_response_prepare.append(count)
    our_app = create_app(services)
    federation_keys.install(our_app, services, our_client)
    use_federation(our_app, our_app[MEDIA], our_client)
    our_server = await _start_tls(our_app, our_socket, tmp_path / "tls")
    origin_server = await _start_tls(origin_app, origin_services.test_socket, tmp_path / "tls")
    # Our clients' own requests: self-signed certificates accepted.
    ours = TestClient(our_server, connector=aiohttp.TCPConnector(ssl=False))
    origin = TestClient(origin_server, connector=aiohttp.TCPConnector(ssl=False))
    try:
        yield Servers(Api(ours, services), Api(origin, origin_services), origin_client, origin_requests)
    finally:
        await ours.close()
        await origin.close()
        await our_client.close()
        await origin_client.close()


async def upload_on(user: User, data: bytes, content_type: str, filename: str | None = None) -> str:
    """Upload and return the media id."""
    r = await user.post("/_matrix/media/v3/upload", raw=data, headers={"Content-Type": content_type},
                        params={"filename": filename} if filename else None)
    assert r.status == 200, r
    return r["content_uri"].rsplit("/", 1)[1]


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


async def fed_get(servers: Servers, path: str, query: dict[str, str] | None = None,
                  signed: bool = True) -> tuple[int, Any, Any]:
    """A GET to our federation routes, as the origin server (signed) or as nobody."""
    if signed:
        try:
            return await servers.origin_client.get_stream(servers.our_name, path, query, max_bytes=1 << 24)
        except FederationError as e:
            return e.status, None, e.body
    async with servers.ours.client.get(path, params=query) as resp:
        return resp.status, resp.headers, parse_json(await resp.read())


# Serving our media to other servers.


async def test_federation_download_is_two_parts_with_the_upload(servers):
    alice = await servers.ours.register("alice")
    data = image_bytes(40, 30, "PNG") + bytes(range(256)) * 2000  # past one read chunk
    media_id = await upload_on(alice, data, "image/png", filename="beach.png")
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
    media_id = await upload_on(alice, image_bytes(400, 300, "PNG"), "image/png")
    query = {"width": "32", "height": "32", "method": "crop"}
    status, headers, body = await fed_get(servers, f"{FED_THUMBNAIL}/{media_id}", query)
    assert status == 200
    [(meta_headers, meta), (file_headers, content)] = strict_parts(headers["Content-Type"], body)
    assert (meta_headers["Content-Type"], parse_json(meta)) == ("application/json", {})
    assert file_headers["Content-Disposition"].startswith("inline; filename=thumbnail.")
    assert open_image(content).size == (32, 32)
    assert open_image(content).format.lower() in file_headers["Content-Type"]
    # Parameters are checked as on the client route.
    status, _, body = await fed_get(servers, f"{FED_THUMBNAIL}/{media_id}", {"width": "32"})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")


async def test_federation_unknown_media_is_not_found(servers):
    for path, query in ((f"{FED_DOWNLOAD}/NoSuchMedia", None), (f"{FED_DOWNLOAD}/bad.id", None),
                        (f"{FED_THUMBNAIL}/NoSuchMedia", {"width": "32", "height": "32"})):
        status, _, body = await fed_get(servers, path, query)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), path


async def test_federation_media_needs_a_signed_request(servers):
    alice = await servers.ours.register("alice")
    media_id = await upload_on(alice, b"secret bytes", "text/plain")
    for path, query in ((f"{FED_DOWNLOAD}/{media_id}", None),
                        (f"{FED_THUMBNAIL}/{media_id}", {"width": "32", "height": "32"})):
        status, _, body = await fed_get(servers, path, query, signed=False)
        assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED"), path


async def test_a_request_signed_with_another_key_is_refused(servers):
    alice = await servers.ours.register("alice")
    media_id = await upload_on(alice, b"secret bytes", "text/plain")
    impostor = nacl.signing.SigningKey.generate()
    impostor.alg, impostor.version = "ed25519", servers.origin.services.signing_key.version
    servers.origin_client.signing_key = impostor
    status, _, body = await fed_get(servers, f"{FED_DOWNLOAD}/{media_id}")
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")


# Fetching remote media for our clients.


async def test_remote_download_is_fetched_once_then_served_from_the_cache(servers):
    bob = await servers.origin.register("bob")
    data = image_bytes(300, 200, "PNG")
    media_id = await upload_on(bob, data, "image/png", filename="cat.png")
    alice = await servers.ours.register("alice")
    origin = servers.origin_name
    status, body, headers = await download_raw(servers.ours, f"{DOWNLOAD}/{origin}/{media_id}", alice.access_token)
    assert (status, body) == (200, data)
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == "inline; filename=cat.png"
    assert servers.origin_requests == [f"{FED_DOWNLOAD}/{media_id}?timeout_ms=20000"]
    # Cached: the download, a file name of our own and a thumbnail ask the origin nothing more.
    for path in (f"{DOWNLOAD}/{origin}/{media_id}", f"{DOWNLOAD}/{origin}/{media_id}/other.png"):
        status, body, _ = await download_raw(servers.ours, path, alice.access_token)
        assert (status, body) == (200, data)
    status, body, _ = await download_raw(
        servers.ours, f"{THUMBNAIL}/{origin}/{media_id}?width=32&height=32&method=crop", alice.access_token
    )
    assert status == 200 and open_image(body).size == (32, 32)
    assert servers.origin_asked(media_id) == 1
    row = await servers.ours.services.media.get_remote(origin, media_id)
    assert (row.origin, row.media_id, row.size, row.content_type, row.upload_name) == (
        origin, media_id, len(data), "image/png", "cat.png")


async def test_remote_thumbnail_fetches_the_media(servers):
    bob = await servers.origin.register("bob")
    media_id = await upload_on(bob, image_bytes(300, 200, "JPEG"), "image/jpeg")
    alice = await servers.ours.register("alice")
    status, body, headers = await download_raw(
        servers.ours, f"{THUMBNAIL}/{servers.origin_name}/{media_id}?width=96&height=96&method=scale",
        alice.access_token,
    )
    assert status == 200 and headers["Content-Type"] in ("image/jpeg", "image/png")
    assert 96 <= max(open_image(body).size) <= 300
    assert servers.origin_asked(media_id) == 1


async def test_concurrent_remote_downloads_join_one_fetch(servers):
    bob = await servers.origin.register("bob")
    data = bytes(range(256)) * 4000
    media_id = await upload_on(bob, data, "application/octet-stream")
    alice = await servers.ours.register("alice")
    results = await asyncio.gather(*(
        download_raw(servers.ours, f"{DOWNLOAD}/{servers.origin_name}/{media_id}", alice.access_token)
        for _ in range(5)
    ))
    assert [(status, body) for status, body, _ in results] == [(200, data)] * 5
    assert servers.origin_asked(media_id) == 1


async def test_remote_not_found_is_not_found(servers):
    alice = await servers.ours.register("alice")
    r = await alice.get(f"{DOWNLOAD}/{servers.origin_name}/NoSuchMedia")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await alice.get(f"{THUMBNAIL}/{servers.origin_name}/NoSuchMedia?width=32&height=32")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert await servers.ours.services.media.get_remote(servers.origin_name, "NoSuchMedia") is None


async def test_unreachable_origin_is_502(servers):
    closed = _bound_socket()  # bound, never listening: connections are refused
    try:
        alice = await servers.ours.register("alice")
        r = await alice.get(f"{DOWNLOAD}/{_name(closed)}/SomeMedia")
        assert (r.status, r.errcode) == (502, "M_UNKNOWN")
    finally:
        closed.close()


@pytest.mark.parametrize("extra_config", [{"media": {"max_upload_bytes": 1000}}])
async def test_remote_media_over_our_limit_is_502_too_large(servers):
    bob = await servers.origin.register("bob")
    media_id = await upload_on(bob, b"x" * 5000, "application/octet-stream")
    alice = await servers.ours.register("alice")
    r = await alice.get(f"{DOWNLOAD}/{servers.origin_name}/{media_id}")
    assert (r.status, r.errcode) == (502, "M_TOO_LARGE")
    assert await servers.ours.services.media.get_remote(servers.origin_name, media_id) is None


async def test_legacy_routes_do_not_fetch_after_the_freeze(servers):
    bob = await servers.origin.register("bob")
    media_id = await upload_on(bob, b"hello", "text/plain")
    r = await servers.ours.request("GET", f"/_matrix/media/v3/download/{servers.origin_name}/{media_id}")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert servers.origin_asked(media_id) == 0


# A peer that answers otherwise than we do: as a server from before spec v1.11
# (media ids "Old..."), or with a Location part ("Moved...").


class Peer:
    def __init__(self, server: TestServer, cdn: TestServer, asked: list[str]):
        self.server_name = f"127.0.0.1:{server.port}"
        self.server, self.cdn, self.asked = server, cdn, asked
        self.location = str(cdn.make_url("/file"))


@pytest.fixture
async def peer(tmp_path) -> AsyncIterator[Peer]:
    asked: list[str] = []
    cdn_app = web.Application()

    async def cdn_file(request):
        asked.append(f"cdn {request.raw_path}")
        return web.Response(body=image_bytes(20, 10, "PNG"), headers={
            "Content-Type": "image/png", "Content-Disposition": 'inline; filename="dot.png"'})

    cdn_app.router.add_get("/file", cdn_file)
    cdn = TestServer(cdn_app)
    await cdn.start_server()

    async def federation_download(request):
        asked.append(request.raw_path)
        if request.match_info["media_id"].startswith("Old"):
            return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404)
        boundary = "6b1f2c"
        body = (f"preamble\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
                f"--{boundary}\r\nLocation: {peer.location}\r\n\r\n\r\n--{boundary}--\r\n")
        return web.Response(body=body.encode(), headers={"Content-Type": f'multipart/mixed; boundary="{boundary}"'})

    async def legacy_download(request):
        asked.append(request.raw_path)
        if request.match_info["media_id"] == "OldMissing":
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "Not found"}, status=404)
        return web.Response(body=b"old notes", headers={
            "Content-Type": "text/plain", "Content-Disposition": "attachment; filename*=utf-8''n%C3%B6tes.txt"})

    app = web.Application()
    app.router.add_get(FED_DOWNLOAD + "/{media_id}", federation_download)
    app.router.add_get("/_matrix/media/v3/download/{server_name}/{media_id}", legacy_download)
    sock = _bound_socket()
    server = await _start_tls(app, sock, tmp_path / "tls")
    peer = Peer(server, cdn, asked)
    try:
        yield peer
    finally:
        await server.close()
        await cdn.close()
        sock.close()


async def test_an_old_server_is_asked_on_the_legacy_route(servers, peer):
    alice = await servers.ours.register("alice")
    path = f"{DOWNLOAD}/{peer.server_name}/OldMedia"
    status, body, headers = await download_raw(servers.ours, path, alice.access_token)
    assert (status, body) == (200, b"old notes")
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''n%C3%B6tes.txt"
    encoded = urllib.parse.quote(peer.server_name, safe="")
    assert peer.asked == [
        f"{FED_DOWNLOAD}/OldMedia?timeout_ms=20000",
        f"/_matrix/media/v3/download/{encoded}/OldMedia?timeout_ms=20000&allow_remote=false",
    ]
    r = await alice.get(f"{DOWNLOAD}/{peer.server_name}/OldMissing")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


async def test_a_location_part_is_followed(servers, peer):
    alice = await servers.ours.register("alice")
    path = f"{DOWNLOAD}/{peer.server_name}/Moved"
    status, body, headers = await download_raw(servers.ours, path, alice.access_token)
    assert (status, body) == (200, image_bytes(20, 10, "PNG"))
    assert (headers["Content-Type"], headers["Content-Disposition"]) == ("image/png", "inline; filename=dot.png")
    assert peer.asked == [f"{FED_DOWNLOAD}/Moved?timeout_ms=20000", "cdn /file"]


async def test_a_location_part_to_a_denied_address_is_refused(servers, peer):
    # 127.0.0.2 is loopback too, and not in the allow list.
    peer.location = peer.location.replace("127.0.0.1", "127.0.0.2")
    alice = await servers.ours.register("alice")
    r = await alice.get(f"{DOWNLOAD}/{peer.server_name}/Moved")
    assert (r.status, r.errcode) == (502, "M_UNKNOWN")
    assert peer.asked == [f"{FED_DOWNLOAD}/Moved?timeout_ms=20000"]
