"""Login, logout, whoami, access tokens and password changes.

Spec: https://spec.matrix.org/v1.19/client-server-api/#legacy-api
and https://spec.matrix.org/v1.19/client-server-api/#password-management
"""

from __future__ import annotations

import hashlib

import bcrypt
import pytest

LOGIN = "/_matrix/client/v3/login"
LOGOUT = "/_matrix/client/v3/logout"
LOGOUT_ALL = "/_matrix/client/v3/logout/all"
WHOAMI = "/_matrix/client/v3/account/whoami"
PASSWORD = "/_matrix/client/v3/account/password"

PW = "correct horse battery"


async def _whoami(api, token: str):
    return await api.request("GET", WHOAMI, token=token)


def _password_auth(user_id: str, password: str, session: str | None = None) -> dict:
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password}
    if session:
        auth["session"] = session
    return auth


# GET /login


async def test_login_flows_and_identifiers(api):
    r = await api.request("GET", LOGIN)
    assert r.status == 200
    assert {"type": "m.login.password"} in r["flows"]
    assert all(isinstance(flow["type"], str) for flow in r["flows"])

    # m.id.user with a localpart or a full user id, matched case-insensitively as Synapse does.
    alice = await api.register("alice")
    for user in ("alice", "@alice:test.local", "ALICE"):
        r = await api.login(user)
        assert r.status == 200, (user, r)
        assert r["user_id"] == alice.user_id
        assert r["device_id"] and r["device_id"] != alice.device_id
        assert r["access_token"] != alice.access_token
        me = await _whoami(api, r["access_token"])
        assert me.status == 200
        assert me.body == {"user_id": alice.user_id, "device_id": r["device_id"], "is_guest": False}

    # The deprecated top-level "user".
    r = await api.request("POST", LOGIN, {"type": "m.login.password", "user": "alice", "password": PW})
    assert r.status == 200
    assert r["user_id"] == "@alice:test.local"
    # A client that supports refresh tokens still gets a working login without one.
    r = await api.login("alice", refresh_token=True)
    assert r.status == 200
    assert (await _whoami(api, r["access_token"])).status == 200
    assert "expires_in_ms" not in r.body or "refresh_token" in r.body


async def test_wrong_password_and_unknown_user_get_the_same_answer(api):
    await api.register("alice")
    wrong = await api.login("alice", password="nope")
    unknown = await api.login("nobody", password="nope")
    remote = await api.login("@alice:elsewhere.example", password=PW)
    for r in (wrong, unknown, remote):
        assert r.status == 403
        assert r.errcode == "M_FORBIDDEN"
    assert wrong.body == unknown.body
    assert len(await api.services.devices.list_devices("@alice:test.local")) == 1


async def test_bad_login_requests(api):
    await api.register("alice")
    ident = {"type": "m.id.user", "user": "alice"}
    cases = [
        # m.login.token is supported (POST /login/get_token); an unknown token is a failed login.
        ({"type": "m.login.token", "token": "abc"}, 403, {"M_FORBIDDEN"}),
        ({"type": "m.login.token"}, 400, {"M_MISSING_PARAM"}),
        ({"type": "m.login.sso"}, 400, {"M_UNKNOWN"}),
        ({"type": "org.example.magic", "identifier": ident, "password": PW}, 400, {"M_UNKNOWN"}),
        ({"identifier": ident, "password": PW}, 400, {"M_MISSING_PARAM", "M_BAD_JSON"}),
        ({"type": "m.login.password", "identifier": ident}, 400, {"M_MISSING_PARAM", "M_BAD_JSON"}),
        ({"type": "m.login.password", "password": PW}, 400, {"M_MISSING_PARAM", "M_BAD_JSON"}),
        ({"type": "m.login.password", "identifier": ident, "password": 12}, 400, {"M_BAD_JSON"}),
        ({"type": 5, "identifier": ident, "password": PW}, 400, {"M_BAD_JSON"}),
        ({"type": "m.login.password", "identifier": "alice", "password": PW}, 400, {"M_BAD_JSON"}),
        ({"type": "m.login.password", "identifier": {"type": "m.id.user"}, "password": PW},
         400, {"M_MISSING_PARAM", "M_BAD_JSON", "M_UNKNOWN"}),
        ({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                                     "address": "a@example.org"}, "password": PW},
         400, {"M_UNKNOWN", "M_INVALID_PARAM"}),
        ({"type": "m.login.password", "identifier": ident, "password": PW, "device_id": 7}, 400, {"M_BAD_JSON"}),
    ]
    for body, status, errcodes in cases:
        r = await api.request("POST", LOGIN, body)
        assert r.status == status and r.errcode in errcodes, (body, r)
    # None of them logged in.
    assert len(await api.services.devices.list_devices("@alice:test.local")) == 1


async def test_login_with_device_id_reuse_replaces_the_old_token(api):
    await api.register("alice")
    first = await api.login("alice", device_id="LAPTOP", initial_device_display_name="Laptop")
    assert first.status == 200
    assert first["device_id"] == "LAPTOP"
    second = await api.login("alice", device_id="LAPTOP", initial_device_display_name="Renamed?")
    assert second.status == 200
    assert second["device_id"] == "LAPTOP"
    assert second["access_token"] != first["access_token"]

    old = await _whoami(api, first["access_token"])
    assert old.status == 401
    assert old.errcode == "M_UNKNOWN_TOKEN"
    assert (await _whoami(api, second["access_token"])).status == 200

    r = await api.request("GET", "/_matrix/client/v3/devices", token=second["access_token"])
    laptops = [d for d in r["devices"] if d["device_id"] == "LAPTOP"]
    assert len(laptops) == 1
    # initial_device_display_name is ignored for a known device.
    assert laptops[0]["display_name"] == "Laptop"


@pytest.mark.parametrize("config_overrides", [{
    "rate_limits": {
        "login": {"per_second": 0.001, "burst": 2},
        "registration": {"per_second": 1000, "burst": 1000},
    },
}])
async def test_login_is_rate_limited(api):
    await api.register("alice")
    for _ in range(2):
        assert (await api.login("alice", password="wrong")).status == 403
    r = await api.login("alice")
    assert r.status == 429
    assert r.errcode == "M_LIMIT_EXCEEDED"
    assert isinstance(r["retry_after_ms"], int) and r["retry_after_ms"] > 0
    # The limit refused the request before the password was checked: nothing logged in.
    assert len(await api.services.devices.list_devices("@alice:test.local")) == 1


# Access tokens


async def test_access_tokens_and_whoami(api):
    alice = await api.register("alice")
    r = await alice.get(WHOAMI)
    assert r.status == 200
    assert r.body == {"user_id": alice.user_id, "device_id": alice.device_id, "is_guest": False}
    # The deprecated access_token query parameter works too.
    r = await api.request("GET", WHOAMI, params={"access_token": alice.access_token})
    assert r.status == 200
    assert r["user_id"] == alice.user_id

    r = await api.request("GET", WHOAMI)
    assert r.status == 401
    assert r.errcode == "M_MISSING_TOKEN"

    r = await api.request("GET", WHOAMI, token="syt_not_a_real_token")
    assert r.status == 401
    assert r.errcode == "M_UNKNOWN_TOKEN"
    assert r["soft_logout"] is False

    r = await api.request("GET", WHOAMI, params={"access_token": "nope"})
    assert r.status == 401
    assert r.errcode == "M_UNKNOWN_TOKEN"

    r = await api.request("POST", LOGOUT, {})
    assert r.status == 401
    assert r.errcode == "M_MISSING_TOKEN"


async def test_password_and_token_are_stored_hashed(api):
    alice = await api.register("alice", password="hunter2 and more")
    stored = await api.services.db.fetchval(
        "SELECT password_hash FROM users WHERE user_id = $1", alice.user_id
    )
    assert stored != "hunter2 and more"
    assert "hunter2" not in stored
    assert stored.startswith("$2")  # bcrypt
    assert bcrypt.checkpw(b"hunter2 and more", stored.encode())

    rows = await api.services.db.fetch("SELECT * FROM access_tokens WHERE user_id = $1", alice.user_id)
    assert len(rows) == 1
    for value in rows[0].values():
        assert value != alice.access_token
        if isinstance(value, (bytes, str)):
            as_bytes = value if isinstance(value, bytes) else value.encode()
            assert alice.access_token.encode() not in as_bytes
    assert rows[0]["token_hash"] == hashlib.sha256(alice.access_token.encode()).digest()


async def test_long_and_unusual_passwords(api):
    # bcrypt reads 72 bytes; longer passwords (up to the 512 allowed) must still work.
    for name, password in (("long", "p" * 100 + "é" * 50), ("nul", "a\u0000b"), ("emoji", "🔑 " * 30)):
        user = await api.register(name, password=password)
        r = await api.login(name, password=password)
        assert r.status == 200, (name, r)
        assert (await api.login(name, password="wrong")).status == 403
        r = await user.post(PASSWORD, {"new_password": password + "!", "auth": _password_auth(name, password)})
        assert r.status == 200, (name, r)
        assert (await api.login(name, password=password + "!")).status == 200


# Logout


async def test_logout(api):
    alice = await api.register("alice")
    other = await api.login("alice")
    r = await alice.post(LOGOUT)
    assert r.status == 200
    assert r.body == {}
    dead = await alice.get(WHOAMI)
    assert dead.status == 401
    assert dead.errcode == "M_UNKNOWN_TOKEN"
    # The other session lives on; the logged-out device is gone.
    assert (await _whoami(api, other["access_token"])).status == 200
    devices = await api.request("GET", "/_matrix/client/v3/devices", token=other["access_token"])
    assert [d["device_id"] for d in devices["devices"]] == [other["device_id"]]
    # Logging out again with the dead token is refused.
    again = await alice.post(LOGOUT)
    assert again.status == 401
    assert again.errcode == "M_UNKNOWN_TOKEN"


async def test_logout_all(api):
    alice = await api.register("alice")
    others = [await api.login("alice") for _ in range(2)]
    bob = await api.register("bob")
    r = await alice.post(LOGOUT_ALL)
    assert r.status == 200
    for token in [alice.access_token] + [o["access_token"] for o in others]:
        dead = await _whoami(api, token)
        assert dead.status == 401
        assert dead.errcode == "M_UNKNOWN_TOKEN"
    assert await api.services.devices.list_devices(alice.user_id) == []
    # Other users are untouched.
    assert (await bob.get(WHOAMI)).status == 200


# Password change (user-interactive auth with m.login.password)


async def test_password_change_refusals(api):
    alice = await api.register("alice")
    other = await api.login("alice")
    await api.register("bob", password="bobs password")
    r = await alice.post(PASSWORD, {"new_password": "new one"})
    assert r.status == 401
    assert r["flows"] == [{"stages": ["m.login.password"]}]
    assert isinstance(r["session"], str)

    # A wrong password.
    r = await alice.post(PASSWORD, {"new_password": "new one", "auth": _password_auth(alice.user_id, "wrong")})
    assert r.status == 401
    assert r.errcode == "M_FORBIDDEN"
    assert r["flows"] == [{"stages": ["m.login.password"]}]

    # Another user's (correct) password.
    r = await alice.post(PASSWORD, {
        "new_password": "new one", "auth": _password_auth("@bob:test.local", "bobs password"),
    })
    assert r.status == 401
    assert r.errcode == "M_FORBIDDEN"

    # A UIA session begun for deleting a device does not authorise a password change.
    r = await alice.delete(f"/_matrix/client/v3/devices/{other['device_id']}", {})
    assert r.status == 401
    r = await alice.post(PASSWORD, {
        "new_password": "new one", "auth": _password_auth("alice", PW, r["session"]),
    })
    assert r.status in (400, 401)

    # Nothing changed: the old password works, the new one does not, no one was logged out.
    assert (await api.login("alice", password=PW)).status == 200
    assert (await api.login("alice", password="new one")).status == 403
    assert (await api.login("bob", password="bobs password")).status == 200
    assert (await _whoami(api, other["access_token"])).status == 200


async def test_password_change_logs_out_other_devices(api):
    alice = await api.register("alice")
    other = await api.login("alice")
    first = await alice.post(PASSWORD, {"new_password": "new one"})
    r = await alice.post(PASSWORD, {
        "new_password": "new one", "auth": _password_auth(alice.user_id, PW, first["session"]),
    })
    assert r.status == 200, r
    assert r.body == {}
    assert (await api.login("alice", password="new one")).status == 200
    old = await api.login("alice", password=PW)
    assert old.status == 403
    assert old.errcode == "M_FORBIDDEN"
    # The requesting device stays logged in; the other one does not.
    assert (await alice.get(WHOAMI)).status == 200
    dead = await _whoami(api, other["access_token"])
    assert dead.status == 401
    assert dead.errcode == "M_UNKNOWN_TOKEN"


async def test_password_change_can_keep_other_devices(api):
    alice = await api.register("alice")
    other = await api.login("alice")
    r = await alice.post(PASSWORD, {
        "new_password": "new one", "logout_devices": False, "auth": _password_auth("alice", PW),
    })
    assert r.status == 200
    assert (await _whoami(api, other["access_token"])).status == 200
    assert (await api.login("alice", password="new one")).status == 200


async def test_password_change_bad_bodies(api):
    alice = await api.register("alice")
    for body, errcode in (
        ({"auth": _password_auth("alice", PW)}, "M_MISSING_PARAM"),
        ({"new_password": 5, "auth": _password_auth("alice", PW)}, "M_BAD_JSON"),
        ({"new_password": "x", "logout_devices": "no", "auth": _password_auth("alice", PW)}, "M_BAD_JSON"),
    ):
        r = await alice.post(PASSWORD, body)
        assert (r.status, r.errcode) == (400, errcode), body
    assert (await api.login("alice", password=PW)).status == 200
    r = await api.request("POST", PASSWORD, {"new_password": "x"})
    assert r.status == 401
    assert r.errcode == "M_MISSING_TOKEN"

