"""HTTP plumbing: error bodies, unknown endpoints and methods, body limits, CORS, no 500s.

Spec: https://spec.matrix.org/v1.19/client-server-api/#api-standards
and https://spec.matrix.org/v1.19/client-server-api/#web-browser-clients
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

LOGIN = "/_matrix/client/v3/login"

SMALL_LIMIT = {"limits": {"max_request_body_bytes": 65_536}}


def _assert_error(r, status: int, errcode: str) -> None:
    assert r.status == status, r
    assert isinstance(r.body, dict), r
    assert r.body["errcode"] == errcode, r
    assert isinstance(r.body["error"], str)
    assert r.headers["Content-Type"].startswith("application/json")


# Request bodies


async def test_malformed_json_is_not_json(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    targets = [
        ("POST", LOGIN, None),
        ("POST", "/_matrix/client/v3/register", None),
        ("POST", "/_matrix/client/v3/createRoom", alice.access_token),
        ("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t1", alice.access_token),
        ("PUT", f"/_matrix/client/v3/profile/{alice.user_id}/displayname", alice.access_token),
    ]
    for raw in (b"{not json", b'{"a": 1', b'{"a": NaN}', b'{"a": Infinity}', b"\xff\xfe{}", b"\xed\xa0\x80"):
        for method, path, token in targets:
            r = await api.request(method, path, token=token, raw=raw)
            _assert_error(r, 400, "M_NOT_JSON")
    # Nothing was sent or changed.
    assert (await alice.get(f"/_matrix/client/v3/profile/{alice.user_id}")).body == {"displayname": "alice"}
    # Where a body is required, an empty one is not JSON either.
    for path in (LOGIN, "/_matrix/client/v3/register"):
        _assert_error(await api.request("POST", path, raw=b""), 400, "M_NOT_JSON")


async def test_nul_characters_and_lone_surrogates(api):
    alice = await api.register("alice")
    profile = f"/_matrix/client/v3/profile/{alice.user_id}"
    # U+0000 cannot be kept in PostgreSQL text columns: a 400, not a 500.
    for path, raw in (
        (f"{profile}/displayname", b'{"displayname": "a\\u0000b"}'),
        (f"{profile}/org.example.x", b'{"org.example.x": {"k": "\\u0000"}}'),
        (f"/_matrix/client/v3/devices/{alice.device_id}", b'{"display_name": "\\u0000"}'),
    ):
        r = await alice.put(path, raw=raw)
        assert r.status == 400, (path, r)
        assert isinstance(r.errcode, str)
    # A lone surrogate is no Unicode text at all.
    r = await alice.put(f"{profile}/displayname", raw=b'{"displayname": "\\ud800"}')
    _assert_error(r, 400, "M_NOT_JSON")
    assert (await alice.get(profile)).body == {"displayname": "alice"}
    assert (await alice.get(f"/_matrix/client/v3/devices/{alice.device_id}"))["display_name"] is None
    # An escaped surrogate pair is an ordinary character.
    r = await alice.put(f"{profile}/displayname", raw=b'{"displayname": "\\ud83d\\ude00"}')
    assert r.status == 200
    assert (await alice.get(profile)).body == {"displayname": "\U0001F600"}


async def test_json_that_is_not_an_object_and_bad_authorization(api):
    alice = await api.register("alice")
    for raw in (b"[]", b'[{"type": "m.login.password"}]', b'"text"', b"42", b"null", b"true"):
        r = await api.request("POST", LOGIN, raw=raw)
        _assert_error(r, 400, "M_BAD_JSON")
        r = await alice.post("/_matrix/client/v3/createRoom", raw=raw)
        _assert_error(r, 400, "M_BAD_JSON")
    r = await alice.get("/_matrix/client/v3/joined_rooms")
    assert r["joined_rooms"] == []

    # Authorization headers that carry no usable bearer token.
    for header in ("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer", "Token abc", "Bearer a b"):
        r = await api.request("GET", "/_matrix/client/v3/account/whoami", headers={"Authorization": header})
        assert r.status == 401, header
        assert r.errcode in ("M_MISSING_TOKEN", "M_UNKNOWN_TOKEN"), header


@pytest.mark.parametrize("config_overrides", [SMALL_LIMIT])
async def test_body_over_the_limit_is_too_large(api):
    alice = await api.register("alice")
    padding = "x" * 70_000
    big = ('{"type": "m.login.password", "padding": "%s"}' % padding).encode()
    _assert_error(await api.request("POST", LOGIN, raw=big), 413, "M_TOO_LARGE")
    r = await alice.put(f"/_matrix/client/v3/profile/{alice.user_id}/org.example.big", {"org.example.big": padding})
    _assert_error(r, 413, "M_TOO_LARGE")
    assert (await alice.get(f"/_matrix/client/v3/profile/{alice.user_id}")).body == {"displayname": "alice"}

    # Without Content-Length (chunked), the limit holds as the body streams in.
    async def chunks():
        for _ in range(20):
            yield b"x" * 8192

    async with api.client.post(LOGIN, data=chunks()) as resp:
        assert resp.status == 413
        assert (await resp.json())["errcode"] == "M_TOO_LARGE"

    # Just under the limit is read and judged on its content.
    fits = ('{"type": "m.login.password", "padding": "%s"}' % ("x" * 60_000)).encode()
    r = await api.request("POST", LOGIN, raw=fits)
    assert r.status == 400
    assert r.errcode != "M_TOO_LARGE"


# Routing


async def test_unknown_endpoints_and_methods_are_unrecognized(api):
    alice = await api.register("alice")
    for path in (
        "/_matrix/client/v3/no_such_endpoint",
        "/_matrix/client/v1/no_such_endpoint",
        "/_matrix/client/v9/login",
        "/_matrix/client/v3/rooms",
        "/_matrix/client/unstable/org.example.feature",
        "/no/such/thing",
    ):
        for token in (None, alice.access_token):
            r = await api.request("GET", path, token=token)
            _assert_error(r, 404, "M_UNRECOGNIZED")
            assert r.headers["Access-Control-Allow-Origin"] == "*"
    r = await alice.post("/_matrix/client/v3/no_such_endpoint", {})
    _assert_error(r, 404, "M_UNRECOGNIZED")

    # The spec: M_UNRECOGNIZED with 405 when the endpoint exists but not for this method.
    for method, path in (
        ("PUT", LOGIN),
        ("DELETE", LOGIN),
        ("GET", "/_matrix/client/v3/register"),
        ("POST", "/_matrix/client/v3/account/whoami"),
        ("GET", "/_matrix/client/v3/createRoom"),
        ("POST", "/_matrix/client/versions"),
        ("PATCH", f"/_matrix/client/v3/profile/{alice.user_id}/displayname"),
    ):
        r = await alice.request(method, path, {})
        _assert_error(r, 405, "M_UNRECOGNIZED")
        assert r.headers["Access-Control-Allow-Origin"] == "*"


# CORS


async def test_cors(api):
    alice = await api.register("alice")
    responses = [
        await api.request("GET", "/_matrix/client/versions"),
        await api.request("GET", LOGIN),
        await alice.get("/_matrix/client/v3/account/whoami"),
        await api.request("GET", "/_matrix/client/v3/account/whoami"),  # 401
        await api.login("alice", password="wrong"),  # 403
        await api.request("POST", LOGIN, raw=b"{"),  # 400
    ]
    for r in responses:
        assert r.headers["Access-Control-Allow-Origin"] == "*", r
        methods = r.headers["Access-Control-Allow-Methods"]
        for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
            assert method in methods
        headers = r.headers["Access-Control-Allow-Headers"].lower()
        for header in ("x-requested-with", "content-type", "authorization"):
            assert header in headers

    # Preflight requests, also for paths that do not exist.
    for path in (
        LOGIN,
        "/_matrix/client/v3/rooms/!room:test.local/send/m.room.message/txn",
        "/_matrix/client/v3/no_such_endpoint",
    ):
        r = await api.request("OPTIONS", path, headers={
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type",
        })
        assert r.status in (200, 204), (path, r)
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "PUT" in r.headers["Access-Control-Allow-Methods"]
        assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()


# No 500 anywhere


async def test_garbage_never_causes_a_server_error(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    event_id = await alice.send_text(room, "hello")
    user = quote(alice.user_id)
    q_room = quote(room)
    endpoints = [
        ("POST", LOGIN), ("POST", "/_matrix/client/v3/register"),
        ("POST", "/_matrix/client/v3/account/password"), ("PUT", "/_matrix/client/v3/devices/DEV"),
        ("DELETE", "/_matrix/client/v3/devices/DEV"), ("POST", "/_matrix/client/v3/delete_devices"),
        ("PUT", f"/_matrix/client/v3/profile/{user}/displayname"),
        ("PUT", f"/_matrix/client/v3/profile/{user}/org.example.x"),
        ("POST", "/_matrix/client/v3/createRoom"),
        ("POST", f"/_matrix/client/v3/join/{q_room}"), ("POST", f"/_matrix/client/v3/rooms/{q_room}/leave"),
        ("POST", f"/_matrix/client/v3/rooms/{q_room}/invite"), ("POST", f"/_matrix/client/v3/rooms/{q_room}/kick"),
        ("POST", f"/_matrix/client/v3/rooms/{q_room}/ban"), ("POST", f"/_matrix/client/v3/rooms/{q_room}/unban"),
        ("POST", f"/_matrix/client/v3/rooms/{q_room}/forget"),
        ("PUT", f"/_matrix/client/v3/rooms/{q_room}/send/m.room.message/g1"),
        ("PUT", f"/_matrix/client/v3/rooms/{q_room}/state/m.room.topic"),
        ("PUT", f"/_matrix/client/v3/rooms/{q_room}/state/m.room.member/{user}"),
        ("PUT", f"/_matrix/client/v3/rooms/{q_room}/redact/{quote(event_id)}/g2"),
        ("PUT", "/_matrix/client/v3/directory/room/%23alias:test.local"),
        ("PUT", f"/_matrix/client/v3/user/{user}/account_data/org.example.data"),
        ("PUT", f"/_matrix/client/v3/user/{user}/rooms/{q_room}/account_data/org.example.data"),
        ("POST", f"/_matrix/client/v3/user/{user}/filter"),
    ]
    bodies = [
        b"{", b"[]", b'"x"', b"null", b'{"a": NaN}', b"\x80\x81",
        b"{}",
        b'{"type": 1, "user": [], "password": {}, "identifier": 5, "auth": "x", "devices": {}}',
        b'{"displayname": {"a": 1}, "org.example.x": null, "msgtype": 5, "body": [], "topic": 7}',
        b'{"user_id": 5, "reason": [], "membership": {}, "room_id": 1, "filter": "x", "room": 9}',
        b'{"preset": "nope", "room_version": 5, "initial_state": [1], "invite": "x", "visibility": 3}',
        b'{"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5}, "password": 1}}',
        b'{"auth": {"type": "m.login.dummy", "session": 5}}',
        b'{"event_fields": "x", "room": {"timeline": {"limit": "ten"}}, "presence": [1]}',
        b'{"new_password": "' + b"x" * 2000 + b'", "logout_devices": true}',
        b'{"big": 123456789012345678901234567890}',
        b'{"displayname": "\\u0000", "org.example.x": "\\u0000", "display_name": "\\u0000", "topic": "\\u0000"}',
        b'{"user_id": "@a\\u0000:test.local", "devices": ["\\u0000"], "room_alias_name": "\\u0000"}',
        b'{"displayname": "\\udfff", "body": "\\ud800", "msgtype": "m.text"}',
    ]
    for method, path in endpoints:
        for body in bodies:
            r = await alice.request(method, path, raw=body)
            assert r.status < 500, (method, path, body, r)
            if r.status >= 400 and not (r.status == 401 and "flows" in r.body):  # UIA asks for a stage
                assert isinstance(r.body, dict) and isinstance(r.body.get("errcode"), str), (method, path, body, r)
    # Alice is still fine.
    assert (await alice.get("/_matrix/client/v3/account/whoami")).status == 200


async def test_odd_paths_and_queries_never_cause_a_server_error(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    odd_ids = ["%00", "%FF", "x" * 2000, "!nope:test.local", "@alice:test.local", "%24event", "%F0%9F%98%80",
               "!a:b:c", "%20", ".."]
    requests = []
    for odd in odd_ids:
        requests += [
            ("GET", f"/_matrix/client/v3/profile/{odd}"),
            ("GET", f"/_matrix/client/v3/profile/{odd}/displayname"),
            ("GET", f"/_matrix/client/v3/devices/{odd}"),
            ("GET", f"/_matrix/client/v3/rooms/{odd}/state"),
            ("GET", f"/_matrix/client/v3/rooms/{odd}/messages?dir=b"),
            ("GET", f"/_matrix/client/v3/rooms/{quote(room)}/event/{odd}"),
            ("GET", f"/_matrix/client/v3/rooms/{quote(room)}/context/{odd}"),
            ("GET", f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.member/{odd}"),
            ("GET", f"/_matrix/client/v3/directory/room/{odd}"),
            ("GET", f"/_matrix/client/v3/user/{odd}/filter/1"),
            ("GET", f"/_matrix/client/v3/user/{quote(alice.user_id)}/account_data/{odd}"),
            ("POST", f"/_matrix/client/v3/join/{odd}"),
        ]
    for query in (
        "limit=abc", "limit=-1", "limit=99999999999999999999999", "dir=sideways", "dir=b&from=garbage",
        "dir=f&from=s-5", "dir=b&to=s99999999999999999999", "filter={bad", "filter=%7B%22limit%22:%22x%22%7D",
    ):
        requests.append(("GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages?{query}"))
    for query in (
        "since=garbage", "since=s-1_0", "since=s99999999999999999999_0", "timeout=abc", "timeout=-5",
        "filter=999999999999999999999", "filter={bad", "filter=%7B%22room%22:5%7D", "full_state=maybe",
        "set_presence=dancing",
    ):
        requests.append(("GET", f"/_matrix/client/v3/sync?{query}"))
    for query in ("username=", "username=%00", "username=" + "a" * 5000):
        requests.append(("GET", f"/_matrix/client/v3/register/available?{query}"))
    requests.append(("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=%00"))

    for method, path in requests:
        async with api.client.request(
            method, path, headers={"Authorization": f"Bearer {alice.access_token}"}, data=b"{}",
        ) as resp:
            text = await resp.text()
            assert resp.status < 500, (method, path, resp.status, text)
            if resp.status >= 400:
                assert '"errcode"' in text, (method, path, resp.status, text)

