"""Inbound request authentication (X-Matrix): a.test receives requests that b.test
signs, and checks them with b.test's keys fetched over HTTP.

Spec: https://spec.matrix.org/v1.19/server-server-api/#request-authentication
"""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web

from federation.auth import federation_origin
from homeserver.protocol.signing import generate_signing_key, sign_json
from homeserver.protocol.xmatrix import XMatrixAuth, format_x_matrix, request_json, sign_request
from tests.conftest import _with_database
from tests.federation.key_peers import Network, peer

A, B = "a.test", "b.test"
ECHO = "/_matrix/federation/v1/echo"


async def _echo(request: web.Request) -> web.Response:
    first = await federation_origin(request)
    # Asked twice by a handler: the same answer, checked once.
    assert await federation_origin(request) == first
    return web.json_response({"origin": first})


@pytest.fixture(autouse=True)
def _no_database_env(monkeypatch):
    monkeypatch.delenv("HOMESERVER_DATABASE", raising=False)


@pytest.fixture
async def servers(tmp_path, pg_admin_dsn, database_pool):
    network = Network()
    names = [await database_pool.take(), await database_pool.take()]
    try:
        async with peer(tmp_path, _with_database(pg_admin_dsn, names[0]), A, network,
                        extra_routes=[("*", ECHO, _echo)]) as a:
            async with peer(tmp_path, _with_database(pg_admin_dsn, names[1]), B, network) as b:
                yield a, b, network
    finally:
        for name in names:
            await database_pool.give_back(name)


async def _send(a, method, uri, headers, body: bytes | None = None):
    r = await a.client.request(method, uri, headers=headers, data=body)
    return r.status, await r.json()


def _signed(key, method, uri, content=None, origin=B, destination=A):
    return {"Authorization": sign_request(key, method, uri, origin, destination, content)}


def _auth(key, method, uri, content=None, origin=B, destination=A, header_destination=A) -> str:
    """A header whose signature covers ``destination`` but which names ``header_destination``."""
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, key)
    key_id = f"{key.alg}:{key.version}"
    return format_x_matrix(XMatrixAuth(origin, header_destination, key_id, signed["signatures"][origin][key_id]))


async def test_a_signed_get_with_a_query_is_accepted(servers):
    a, b, _ = servers
    uri = ECHO + "?limit=10&v=a"
    assert await _send(a, "GET", uri, _signed(b.services.signing_key, "GET", uri)) == (200, {"origin": B})


async def test_the_access_log_line_names_the_origin_server(servers, caplog):
    a, b, _ = servers
    caplog.set_level(logging.INFO, logger="homeserver.access")
    assert (await _send(a, "GET", ECHO, _signed(b.services.signing_key, "GET", ECHO)))[0] == 200
    # (The other line is b.test answering a.test's fetch of its keys.)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "homeserver.access" and ECHO in r.getMessage()]
    assert f" GET {ECHO} 200 " in line and line.endswith(f" user={B}")


async def test_a_signed_put_with_a_body_is_accepted(servers):
    a, b, _ = servers
    content = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"x": "ü"}}]}
    headers = _signed(b.services.signing_key, "PUT", ECHO, content)
    body = json.dumps(content, ensure_ascii=False).encode()
    assert await _send(a, "PUT", ECHO, headers, body) == (200, {"origin": B})


async def test_a_header_without_destination_is_checked_against_our_name(servers):
    a, b, _ = servers
    key = b.services.signing_key
    headers = {"Authorization": _auth(key, "GET", ECHO, header_destination=None)}
    assert await _send(a, "GET", ECHO, headers) == (200, {"origin": B})
    # Signed for another destination, naming none in the header: the signature fails.
    headers = {"Authorization": _auth(key, "GET", ECHO, destination="c.test", header_destination=None)}
    assert (await _send(a, "GET", ECHO, headers))[0] == 401


async def _unauthorized(a, method, uri, headers, body=None):
    status, answer = await _send(a, method, uri, headers, body)
    assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED"), answer


async def test_no_authorization_is_refused(servers):
    a, _, _ = servers
    await _unauthorized(a, "GET", ECHO, {})
    await _unauthorized(a, "GET", ECHO, {"Authorization": "Bearer abc"})
    await _unauthorized(a, "GET", ECHO, {"Authorization": "X-Matrix origin=b.test"})


async def test_another_destination_is_refused(servers):
    a, b, _ = servers
    key = b.services.signing_key
    await _unauthorized(a, "GET", ECHO, _signed(key, "GET", ECHO, destination="c.test"))


async def test_a_signature_over_anything_else_is_refused(servers):
    a, b, _ = servers
    key = b.services.signing_key
    # Another path, query, method or body than was signed.
    await _unauthorized(a, "GET", ECHO + "?x=1", _signed(key, "GET", ECHO))
    await _unauthorized(a, "GET", ECHO + "?x=2", _signed(key, "GET", ECHO + "?x=1"))
    await _unauthorized(a, "DELETE", ECHO, _signed(key, "GET", ECHO))
    await _unauthorized(a, "PUT", ECHO, _signed(key, "PUT", ECHO, {"a": 1}), b'{"a": 2}')
    # A body sent but not signed, and signed but not sent.
    await _unauthorized(a, "PUT", ECHO, _signed(key, "PUT", ECHO), b"{}")
    await _unauthorized(a, "PUT", ECHO, _signed(key, "PUT", ECHO, {}))


async def test_a_key_the_origin_does_not_have_is_refused(servers):
    a, b, _ = servers
    impostor = generate_signing_key("nothere")
    await _unauthorized(a, "GET", ECHO, _signed(impostor, "GET", ECHO))
    # Same key id as the real one, another key.
    impostor = generate_signing_key(b.services.signing_key.version)
    await _unauthorized(a, "GET", ECHO, _signed(impostor, "GET", ECHO))


async def test_an_origin_that_is_not_a_server_name_or_cannot_be_reached_is_refused(servers):
    a, b, network = servers
    key = b.services.signing_key
    await _unauthorized(a, "GET", ECHO, _signed(key, "GET", ECHO, origin="not a server"))
    await _unauthorized(a, "GET", ECHO, _signed(key, "GET", ECHO, origin="-bad-.test:99999999"))
    await _unauthorized(a, "GET", ECHO, _signed(key, "GET", ECHO, origin="gone.test"))
    assert network.count("gone.test") == 1


async def test_one_valid_header_of_several_from_the_same_origin_suffices(servers):
    a, b, _ = servers
    key = b.services.signing_key
    bad = _auth(generate_signing_key("other"), "GET", ECHO)
    good = _auth(key, "GET", ECHO)
    r = await a.client.get(ECHO, headers=[("Authorization", bad), ("Authorization", good)])
    assert (r.status, await r.json()) == (200, {"origin": B})
    # Headers naming different origins are refused, even if one is valid.
    other = _auth(generate_signing_key("o"), "GET", ECHO, origin="c.test")
    r = await a.client.get(ECHO, headers=[("Authorization", good), ("Authorization", other)])
    assert r.status == 401


async def test_a_body_that_is_not_json_is_refused(servers):
    a, b, _ = servers
    status, answer = await _send(a, "PUT", ECHO, _signed(b.services.signing_key, "PUT", ECHO, {}), b"{nope")
    assert (status, answer["errcode"]) == (400, "M_NOT_JSON")
