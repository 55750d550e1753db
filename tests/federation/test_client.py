"""The federation client against real HTTPS servers on 127.0.0.1.

Certificates are made with the openssl command: a test CA with a certificate for
``fed.test`` and 127.0.0.1, and a self-signed one. Host names other than IP
literals reach 127.0.0.1 through a fake DNS (a plain object answering from a dict).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from federation.backoff import Backoff
from federation.client import (
    AddressDenied,
    FederationClient,
    FederationError,
    FederationUnreachable,
    InvalidResponse,
    ResponseTooLarge,
    encode_query,
)
from federation.discovery import DnsError, ServerResolver, SrvAnswer
from homeserver.config import FederationConfig
from homeserver.protocol.canonical import parse_json
from homeserver.protocol.signing import generate_signing_key
from homeserver.protocol.xmatrix import parse_x_matrix, verify_request

ALLOW_LOCAL = ["127.0.0.1/32"]
KEY = generate_signing_key("client1")


# --- Certificates ----------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@dataclass(frozen=True)
class Certs:
    ca: Path
    leaf: Path
    leaf_key: Path
    self_signed: Path
    self_signed_key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Federation Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    _openssl("req", "-new", *ec, "-subj", "/CN=fed.test",
             "-keyout", "leaf.key", "-out", "leaf.csr", cwd=d)
    (d / "leaf.ext").write_text(
        "subjectAltName=DNS:fed.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", "leaf.crt", cwd=d)
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:fed.test",
             "-keyout", "self.key", "-out", "self.crt", cwd=d)
    return Certs(d / "ca.crt", d / "leaf.crt", d / "leaf.key", d / "self.crt", d / "self.key")


def trusting(certs: Certs) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    return context


# --- The peer ----------------------------------------------------------------------------


@dataclass
class Peer:
    port: int
    requests: list[dict] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    # Host header -> a function making the answer (a response object serves only once).
    well_known: dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"


def _peer_app(peer: Peer) -> web.Application:
    routes = web.RouteTableDef()

    @routes.route("*", "/_matrix/federation/v1/echo/{rest:.*}")
    async def echo(request: web.Request) -> web.Response:
        raw = await request.read()
        content = parse_json(raw) if raw else None
        auth = parse_x_matrix(request.headers["Authorization"])
        # The receiving side's check: the signature covers method, target as sent,
        # both names and the body.
        verify_request(
            auth, request.method, request.raw_path, auth.destination, content, KEY.verify_key
        )
        seen = {
            "method": request.method, "uri": request.raw_path, "host": request.headers["Host"],
            "origin": auth.origin, "destination": auth.destination, "content": content,
            "content_type": request.headers.get("Content-Type"),
        }
        peer.requests.append(seen)
        return web.json_response(seen)

    @routes.get("/_matrix/key/v2/server")
    async def keys(request: web.Request) -> web.Response:
        peer.requests.append({"authorization": request.headers.get("Authorization")})
        return web.json_response({"server_name": "peer"})

    @routes.get("/_matrix/federation/v1/forbidden")
    async def forbidden(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_FORBIDDEN", "error": "Not for you"}, status=403)

    @routes.get("/_matrix/federation/v1/unavailable")
    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="<html>Bad gateway</html>")

    @routes.get("/_matrix/federation/v1/redirect")
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/_matrix/federation/v1/echo/x")

    @routes.get("/_matrix/federation/v1/notjson")
    async def notjson(request: web.Request) -> web.Response:
        return web.Response(text="{hello")

    @routes.get("/_matrix/federation/v1/nan")
    async def nan(request: web.Request) -> web.Response:
        return web.Response(text='{"a": NaN}', content_type="application/json")

    @routes.get("/_matrix/federation/v1/big")
    async def big(request: web.Request) -> web.Response:
        return web.json_response({"filler": "x" * 100_000})

    @routes.get("/_matrix/federation/v1/chunked")
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: the size shows only while reading
        await response.prepare(request)
        for _ in range(10):
            await response.write(b" " * 10_000)
        await response.write(b"{}")
        await response.write_eof()
        return response

    @routes.get("/_matrix/federation/v1/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    @routes.get("/_matrix/federation/v1/media/download/{media_id}")
    async def media(request: web.Request) -> web.Response:
        assert parse_x_matrix(request.headers["Authorization"]).origin
        return web.Response(body=b"\x89PNG" + b"\0" * 1000, content_type="image/png")

    @routes.get("/.well-known/matrix/server")
    async def well_known(request: web.Request) -> web.Response:
        answer = peer.well_known.get(request.headers["Host"])
        if answer is None:
            raise web.HTTPNotFound()
        response = answer()
        if isinstance(response, web.HTTPException):
            raise response
        return response

    app = web.Application()
    app.add_routes(routes)
    return app


async def _start(peer_cert: Path, peer_key: Path) -> tuple[Peer, web.AppRunner]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(peer_cert), str(peer_key))
    peer = Peer(port=0)
    context.sni_callback = lambda _obj, name, _ctx: peer.sni.append(name)
    runner = web.AppRunner(_peer_app(peer), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    peer.port = site._server.sockets[0].getsockname()[1]
    return peer, runner


@pytest.fixture(scope="module")
async def servers(certs):
    peer, runner = await _start(certs.leaf, certs.leaf_key)
    self_signed, runner2 = await _start(certs.self_signed, certs.self_signed_key)
    yield peer, self_signed
    await runner.cleanup()
    await runner2.cleanup()


@pytest.fixture
def peer(servers) -> Peer:
    peer = servers[0]
    peer.requests.clear()
    peer.sni.clear()
    peer.well_known.clear()
    return peer


@pytest.fixture
def self_signed_peer(servers) -> Peer:
    return servers[1]


class FakeDns:
    def __init__(self, addresses: dict[str, list[str]]):
        self.address_records = addresses

    async def srv(self, name):
        return SrvAnswer((), 600)

    async def addresses(self, host):
        if host not in self.address_records:
            raise DnsError(f"NXDOMAIN {host}")
        return self.address_records[host]


@pytest.fixture
async def make_client(certs):
    clients: list[FederationClient] = []

    def make(*, allow=ALLOW_LOCAL, deny=(), verify=True, trust_ca=True, dns=None,
             server_name="origin.test", enabled=True, backoff=None) -> FederationClient:
        config = FederationConfig(
            enabled=enabled, verify_certificates=verify, ip_range_allowlist=list(allow),
            ip_range_denylist=list(deny), request_timeout_seconds=20,
        )
        resolver = ServerResolver(FakeDns(dns or {"fed.test": ["127.0.0.1"]}))
        client = FederationClient(
            server_name, KEY, config, resolver,
            ssl_context=trusting(certs) if trust_ca else None, backoff=backoff,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Signing and addressing --------------------------------------------------------------


async def test_signed_get_to_an_ip_literal(peer, make_client):
    client = make_client()
    path = "/_matrix/federation/v1/echo/%24event%3Aserver"
    answer = await client.get_json(peer.name, path, {"limit": "10", "v": ["a/b", "c d,é"]})
    # The peer verified the signature over exactly the target it received.
    assert answer["uri"] == path + "?limit=10&v=a%2Fb&v=c%20d%2C%C3%A9"
    assert answer["method"] == "GET" and answer["content"] is None
    assert (answer["origin"], answer["destination"]) == ("origin.test", peer.name)
    assert answer["host"] == peer.name
    # No SNI for an IP address; the certificate was checked for the IP.
    assert peer.sni == [None]


async def test_put_and_post_sign_the_body_floats_included(peer, make_client):
    client = make_client()
    body = {"pdus": [{"content": {"weight": 1.5, "text": "é"}}], "edus": []}
    answer = await client.put_json(peer.name, "/_matrix/federation/v1/echo/send/1", body)
    assert answer["content"] == body and answer["method"] == "PUT"
    assert answer["content_type"] == "application/json"
    answer = await client.post_json(peer.name, "/_matrix/federation/v1/echo/q", {}, query={"a": "1"})
    assert (answer["method"], answer["content"], answer["uri"]) == (
        "POST", {}, "/_matrix/federation/v1/echo/q?a=1")


async def test_hostname_destination_uses_sni_host_header_and_checks_the_name(peer, make_client):
    client = make_client(dns={"fed.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    answer = await client.get_json(f"fed.test:{peer.port}", "/_matrix/federation/v1/echo/a")
    assert answer["host"] == f"fed.test:{peer.port}"
    assert answer["destination"] == f"fed.test:{peer.port}"
    assert peer.sni == ["fed.test"]
    # Same address, but the certificate is not valid for other.test.
    with pytest.raises(FederationUnreachable, match="certificate"):
        await client.get_json(f"other.test:{peer.port}", "/_matrix/federation/v1/echo/a")


async def test_delegation_through_well_known(peer, make_client):
    client = make_client(dns={"fed.test": ["127.0.0.1"], "example.test": ["127.0.0.1"]})
    client.well_known_port = peer.port  # the peer plays the server on port 443
    peer.well_known[f"redirect.test:{peer.port}"] = lambda: web.HTTPFound(
        f"https://fed.test:{peer.port}/.well-known/matrix/server")
    peer.well_known[f"fed.test:{peer.port}"] = lambda: web.json_response(
        {"m.server": f"fed.test:{peer.port}"})
    client.resolver.dns.address_records["redirect.test"] = ["127.0.0.1"]
    # redirect.test has no certificate here: its /.well-known fails, and so does the request.
    with pytest.raises(FederationUnreachable):
        await client.get_json("redirect.test", "/_matrix/federation/v1/echo/a")
    answer = await client.get_json("fed.test", "/_matrix/federation/v1/echo/a")
    # Signed for the server name; sent to the delegated name with its Host header.
    assert answer["destination"] == "fed.test"
    assert answer["host"] == f"fed.test:{peer.port}"


async def test_well_known_redirects_are_followed(peer, make_client, certs):
    client = make_client(verify=False)  # redirect.test has no certificate of its own
    client.well_known_port = peer.port
    client.resolver.dns.address_records["redirect.test"] = ["127.0.0.1"]
    peer.well_known[f"redirect.test:{peer.port}"] = lambda: web.HTTPFound(
        f"https://fed.test:{peer.port}/.well-known/matrix/server")
    peer.well_known[f"fed.test:{peer.port}"] = lambda: web.json_response(
        {"m.server": f"fed.test:{peer.port}"})
    response = await client.fetch_well_known("redirect.test")
    assert response.status == 200 and parse_json(response.body) == {"m.server": f"fed.test:{peer.port}"}
    answer = await client.get_json("redirect.test", "/_matrix/federation/v1/echo/a")
    assert answer["host"] == f"fed.test:{peer.port}"
    # A redirect to an address the policy refuses is not followed.
    peer.well_known[f"fed.test:{peer.port}"] = lambda: web.HTTPFound(
        f"https://10.0.0.1:{peer.port}/.well-known/matrix/server")
    with pytest.raises(AddressDenied):
        await client.fetch_well_known("fed.test")


async def test_unsigned_request_has_no_authorization(peer, make_client):
    client = make_client()
    answer = await client.get_json(peer.name, "/_matrix/key/v2/server", signed=False)
    assert answer == {"server_name": "peer"}
    assert peer.requests == [{"authorization": None}]


async def test_requests_to_our_own_name_are_allowed(peer, make_client):
    client = make_client(server_name=peer.name)
    answer = await client.get_json(peer.name, "/_matrix/federation/v1/echo/self")
    assert answer["origin"] == answer["destination"] == peer.name


# --- The IP policy ----------------------------------------------------------------------


async def test_loopback_refused_without_the_allow_list(peer, make_client):
    client = make_client(allow=())
    with pytest.raises(AddressDenied):
        await client.get_json(peer.name, "/_matrix/federation/v1/echo/a")
    # Also when a host name resolves there.
    with pytest.raises(AddressDenied):
        await client.get_json(f"fed.test:{peer.port}", "/_matrix/federation/v1/echo/a")
    assert peer.requests == []


async def test_deny_list_wins_over_the_allow_list(peer, make_client):
    client = make_client(deny=["127.0.0.0/8"])
    with pytest.raises(AddressDenied):
        await client.get_json(peer.name, "/_matrix/federation/v1/echo/a")
    assert peer.requests == []


async def test_only_allowed_addresses_are_tried(peer, make_client):
    # The first answer is refused by the policy, the second is connected to.
    client = make_client(dns={"fed.test": ["10.1.2.3", "127.0.0.1"]})
    answer = await client.get_json(f"fed.test:{peer.port}", "/_matrix/federation/v1/echo/a")
    assert answer["host"] == f"fed.test:{peer.port}"


# --- TLS -----------------------------------------------------------------------------------


async def test_certificates_are_verified_by_default(self_signed_peer, make_client):
    client = make_client(trust_ca=False)
    with pytest.raises(FederationUnreachable, match="certificate"):
        await client.get_json(self_signed_peer.name, "/_matrix/federation/v1/echo/a")


async def test_unverified_when_verify_certificates_is_false(self_signed_peer, make_client):
    client = make_client(verify=False, trust_ca=False)
    answer = await client.get_json(self_signed_peer.name, "/_matrix/federation/v1/echo/a")
    assert answer["destination"] == self_signed_peer.name


# --- Errors ---------------------------------------------------------------------------------


async def test_http_errors(peer, make_client):
    client = make_client()
    with pytest.raises(FederationError) as info:
        await client.get_json(peer.name, "/_matrix/federation/v1/forbidden")
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")
    assert info.value.body == {"errcode": "M_FORBIDDEN", "error": "Not for you"}
    with pytest.raises(FederationError) as info:
        await client.get_json(peer.name, "/_matrix/federation/v1/unknown")
    assert (info.value.status, info.value.errcode) == (404, None)
    assert isinstance(info.value.body, str)
    # JSON endpoints do not redirect.
    with pytest.raises(FederationError) as info:
        await client.get_json(peer.name, "/_matrix/federation/v1/redirect")
    assert info.value.status == 302
    assert not client.backoff().is_down(peer.name)


async def test_invalid_answers(peer, make_client):
    client = make_client()
    for path in ("/_matrix/federation/v1/notjson", "/_matrix/federation/v1/nan"):
        with pytest.raises(InvalidResponse):
            await client.get_json(peer.name, path)
    with pytest.raises(ResponseTooLarge):
        await client.get_json(peer.name, "/_matrix/federation/v1/big", max_bytes=50_000)
    answer = await client.get_json(peer.name, "/_matrix/federation/v1/big", max_bytes=200_000)
    assert len(answer["filler"]) == 100_000
    with pytest.raises(ResponseTooLarge):
        await client.get_json(peer.name, "/_matrix/federation/v1/chunked", max_bytes=50_000)
    assert await client.get_json(peer.name, "/_matrix/federation/v1/chunked") == {}
    # The server answered: it is not backing off.
    assert not client.backoff().is_down(peer.name)


async def test_connection_refused_and_timeout(peer, make_client):
    client = make_client()
    with pytest.raises(FederationUnreachable):
        await client.get_json(f"127.0.0.1:{closed_port()}", "/_matrix/federation/v1/echo/a")
    with pytest.raises(FederationUnreachable, match="no answer"):
        await client.get_json(peer.name, "/_matrix/federation/v1/slow", timeout=0.5)


async def test_unresolvable_host_or_invalid_name(make_client):
    client = make_client()
    for destination in ("nowhere.test:8448", "not a server name", "fed.test:0"):
        with pytest.raises(FederationUnreachable):
            await client.get_json(destination, "/_matrix/federation/v1/echo/a")


async def test_federation_disabled(peer, make_client):
    client = make_client(enabled=False)
    with pytest.raises(FederationUnreachable, match="disabled"):
        await client.get_json(peer.name, "/_matrix/federation/v1/echo/a")
    assert peer.requests == []


async def test_get_stream(peer, make_client):
    client = make_client()
    status, headers, body = await client.get_stream(
        peer.name, "/_matrix/federation/v1/media/download/abc", max_bytes=10_000)
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    with pytest.raises(ResponseTooLarge):
        await client.get_stream(peer.name, "/_matrix/federation/v1/media/download/abc", max_bytes=100)
    status, headers, _ = await client.get_stream(peer.name, "/_matrix/federation/v1/redirect", max_bytes=100)
    assert status == 302 and headers["Location"] == "/_matrix/federation/v1/echo/x"
    with pytest.raises(FederationError):
        await client.get_stream(peer.name, "/_matrix/federation/v1/unknown", max_bytes=100)


def test_encode_query():
    assert encode_query({"a": "1", "b": ["x", "y"], "c": "é &/="}) == "a=1&b=x&b=y&c=%C3%A9%20%26%2F%3D"


async def test_paths_must_be_encoded(make_client):
    client = make_client()
    for path in ("_matrix/x", "/_matrix/x?y=1", "/_matrix/x#f"):
        with pytest.raises(ValueError):
            await client.get_json("127.0.0.1:1", path)


# --- Backoff -----------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


async def test_unreachable_destination_backs_off_and_success_resets(peer, make_client):
    clock = Clock()
    client = make_client(backoff=Backoff(clock=clock))
    dead = f"127.0.0.1:{closed_port()}"
    with pytest.raises(FederationUnreachable):
        await client.get_json(dead, "/_matrix/federation/v1/echo/a")
    assert client.backoff().is_down(dead)
    with pytest.raises(FederationUnreachable, match="backing off"):
        await client.get_json(dead, "/_matrix/federation/v1/echo/a")
    assert client.backoff().failures(dead) == 1  # skipping is not another failure
    # A 503 from a proxy marks the destination down; once the delay has passed it is tried again.
    with pytest.raises(FederationError):
        await client.get_json(peer.name, "/_matrix/federation/v1/unavailable")
    assert client.backoff().is_down(peer.name)
    clock.now += 10
    assert not client.backoff().is_down(peer.name)
    await client.get_json(peer.name, "/_matrix/federation/v1/echo/a")
    assert client.backoff().failures(peer.name) == 0


def test_backoff_schedule():
    clock = Clock()
    backoff = Backoff(clock=clock)
    delays = []
    for _ in range(16):
        delays.append(backoff.record_failure("d"))
        clock.now += delays[-1]
    assert delays[:4] == [10, 20, 40, 80]
    assert delays[-1] == 24 * 3600 and max(delays) == 24 * 3600
    # Failures while already down do not lengthen the wait.
    backoff.record_failure("e")
    clock.now += 5
    assert backoff.record_failure("e") == 5 and backoff.failures("e") == 1
    assert backoff.is_down("e") and backoff.retry_in("e") == 5
    backoff.record_success("e")
    assert not backoff.is_down("e") and backoff.failures("e") == 0
