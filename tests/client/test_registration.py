"""POST /register, /register/available and the registration token validity API.

Spec: https://spec.matrix.org/v1.19/client-server-api/#account-registration-and-management
"""

from __future__ import annotations

import pytest

REGISTER = "/_matrix/client/v3/register"
AVAILABLE = "/_matrix/client/v3/register/available"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"
WHOAMI = "/_matrix/client/v3/account/whoami"

CLOSED = {"registration": {"enabled": False}}
TOKEN_GATED = {"registration": {"enabled": True, "require_token": True}}


async def _user_count(api) -> int:
    return await api.services.users.count_users()


# Closed registration (the default of a fresh configuration)


def test_registration_is_closed_by_default_in_config():
    from homeserver.config import parse_config

    assert parse_config({"server_name": "example.org"}).registration.enabled is False


@pytest.mark.parametrize("config_overrides", [CLOSED])
async def test_closed_registration_is_forbidden(api):
    r = await api.request("POST", REGISTER, {
        "username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"},
    })
    assert r.status == 403
    assert r.errcode == "M_FORBIDDEN"
    assert isinstance(r["error"], str)
    assert await _user_count(api) == 0
    # With registration closed every token is invalid: the spec answers 403.
    r = await api.request("GET", VALIDITY, params={"token": "anything"})
    assert r.status == 403
    assert r.errcode == "M_FORBIDDEN"


# Open registration with the dummy stage


async def test_open_registration_asks_for_the_dummy_stage_first(api):
    r = await api.request("POST", REGISTER, {"username": "alice", "password": "secret pw"})
    assert r.status == 401
    assert r["flows"] == [{"stages": ["m.login.dummy"]}]
    assert isinstance(r["session"], str) and r["session"]
    assert r.body.get("completed", []) == []
    assert isinstance(r["params"], dict)
    assert await _user_count(api) == 0

    done = await api.request("POST", REGISTER, {
        "username": "alice", "password": "secret pw",
        "auth": {"type": "m.login.dummy", "session": r["session"]},
    })
    assert done.status == 200, done
    assert done["user_id"] == "@alice:test.local"
    assert done["device_id"]
    assert done["access_token"]
    me = await api.request("GET", WHOAMI, token=done["access_token"])
    assert me.status == 200
    assert me["user_id"] == "@alice:test.local"
    assert me["device_id"] == done["device_id"]

    # A client may also ask for the flows with an empty body.
    r = await api.request("POST", REGISTER, {})
    assert r.status == 401
    assert r["flows"] == [{"stages": ["m.login.dummy"]}]


async def test_registration_uses_given_device_and_password(api):
    r = await api.request("POST", REGISTER, {
        "username": "alice", "password": "s3cret", "device_id": "MYPHONE",
        "initial_device_display_name": "Alice's phone", "auth": {"type": "m.login.dummy"},
    })
    assert r.status == 200
    assert r["device_id"] == "MYPHONE"
    device = await api.request("GET", "/_matrix/client/v3/devices/MYPHONE", token=r["access_token"])
    assert device.status == 200
    assert device["display_name"] == "Alice's phone"
    login = await api.login("alice", password="s3cret")
    assert login.status == 200
    assert login["user_id"] == "@alice:test.local"
    assert (await api.login("alice", password="wrong")).status == 403


async def test_username_mapping(api):
    from homeserver.protocol import ids

    # Without a username the server picks a valid one.
    r = await api.request("POST", REGISTER, {"password": "pw", "auth": {"type": "m.login.dummy"}})
    assert r.status == 200
    assert ids.is_valid_user_id(r["user_id"])
    assert r["user_id"].endswith(":test.local")
    me = await api.request("GET", WHOAMI, token=r["access_token"])
    assert me["user_id"] == r["user_id"]

    # The spec lets the server map a username onto the grammar "in a logical
    # manner"; Synapse lowercases it, and so do we.
    r = await api.request("POST", REGISTER, {
        "username": "Alice", "password": "pw", "auth": {"type": "m.login.dummy"},
    })
    assert r.status == 200
    assert r["user_id"] == "@alice:test.local"


async def test_user_in_use(api):
    await api.register("alice")
    r = await api.request("POST", REGISTER, {
        "username": "alice", "password": "other", "auth": {"type": "m.login.dummy"},
    })
    assert r.status == 400
    assert r.errcode == "M_USER_IN_USE"
    # The spec: servers MUST return these codes before user-interactive auth.
    r = await api.request("POST", REGISTER, {"username": "alice", "password": "other"})
    assert r.status == 400
    assert r.errcode == "M_USER_IN_USE"
    r = await api.request("POST", REGISTER, {
        "username": "ALICE", "password": "pw", "auth": {"type": "m.login.dummy"},
    })
    assert r.status == 400
    assert r.errcode == "M_USER_IN_USE"
    assert await _user_count(api) == 1


async def test_invalid_usernames(api):
    for username in ["bad name", "ümlaut", "alice:other", "@alice", "", "a" * 300, "tab\t"]:
        r = await api.request("POST", REGISTER, {
            "username": username, "password": "pw", "auth": {"type": "m.login.dummy"},
        })
        assert (r.status, r.errcode) == (400, "M_INVALID_USERNAME"), username
        # Also before user-interactive auth.
        r = await api.request("POST", REGISTER, {"username": username, "password": "pw"})
        assert (r.status, r.errcode) == (400, "M_INVALID_USERNAME"), username
    assert await _user_count(api) == 0


async def test_bad_registration_bodies_create_nothing(api):
    dummy = {"type": "m.login.dummy"}
    cases = [
        ({"username": 42, "password": "pw", "auth": dummy}, "M_BAD_JSON"),
        ({"username": "alice", "password": 42, "auth": dummy}, "M_BAD_JSON"),
        ({"username": "alice", "password": "pw", "auth": "dummy"}, "M_BAD_JSON"),
        ({"username": "alice", "password": "pw", "inhibit_login": "yes", "auth": dummy}, "M_BAD_JSON"),
        ({"username": "alice", "auth": dummy}, "M_MISSING_PARAM"),
        ({"username": "alice", "password": "x" * 1000, "auth": dummy}, "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        r = await api.request("POST", REGISTER, body)
        assert (r.status, r.errcode) == (400, errcode), body
    assert await _user_count(api) == 0


async def test_inhibit_login(api):
    r = await api.request("POST", REGISTER, {
        "username": "alice", "password": "pw", "inhibit_login": True, "auth": {"type": "m.login.dummy"},
    })
    assert r.status == 200
    assert r["user_id"] == "@alice:test.local"
    assert "access_token" not in r.body
    assert "device_id" not in r.body
    assert await api.services.devices.list_devices("@alice:test.local") == []
    # The account exists and can log in.
    assert (await api.login("alice", password="pw")).status == 200


async def test_refused_registration_attempts(api):
    # Guests are not allowed; unknown kinds are invalid.
    r = await api.request("POST", REGISTER, {}, params={"kind": "guest"})
    assert r.status == 403
    assert r.errcode == "M_FORBIDDEN"
    r = await api.request("POST", REGISTER, {"auth": {"type": "m.login.dummy"}, "password": "pw"},
                          params={"kind": "robot"})
    assert r.status == 400
    assert r.errcode == "M_INVALID_PARAM"

    # An unknown session completes nothing.
    r = await api.request("POST", REGISTER, {
        "username": "alice", "password": "pw", "auth": {"type": "m.login.dummy", "session": "nope"},
    })
    assert r.status in (400, 401)
    assert r.errcode is not None
    assert await _user_count(api) == 0

    # A stage that no flow offers completes nothing.
    r = await api.request("POST", REGISTER, {
        "username": "alice", "password": "pw", "auth": {"type": "m.login.password", "password": "x"},
    })
    assert r.status == 401
    assert r.errcode is not None
    assert r["flows"] == [{"stages": ["m.login.dummy"]}]
    assert await _user_count(api) == 0


@pytest.mark.parametrize("config_overrides", [{
    "rate_limits": {
        "login": {"per_second": 1000, "burst": 1000},
        "registration": {"per_second": 0.001, "burst": 2},
    },
}])
async def test_registration_is_rate_limited(api):
    for name in ("alice", "bob"):
        await api.register(name)
    r = await api.request("POST", REGISTER, {
        "username": "carol", "password": "pw", "auth": {"type": "m.login.dummy"},
    })
    assert r.status == 429
    assert r.errcode == "M_LIMIT_EXCEEDED"
    assert r["retry_after_ms"] > 0
    assert await _user_count(api) == 2


# /register/available


async def test_available(api):
    r = await api.request("GET", AVAILABLE, params={"username": "alice"})
    assert r.status == 200
    assert r.body == {"available": True}

    await api.register("alice")
    for name in ("alice", "ALICE"):
        r = await api.request("GET", AVAILABLE, params={"username": name})
        assert (r.status, r.errcode) == (400, "M_USER_IN_USE"), name

    for name in ("bad name", "ümlaut", "a:b"):
        r = await api.request("GET", AVAILABLE, params={"username": name})
        assert (r.status, r.errcode) == (400, "M_INVALID_USERNAME"), name

    r = await api.request("GET", AVAILABLE)
    assert r.status == 400
    assert r.errcode == "M_MISSING_PARAM"


# Token-gated registration (m.login.registration_token)


@pytest.mark.parametrize("config_overrides", [TOKEN_GATED])
async def test_token_registration_flow(api):
    await api.services.registration.create_token("letmein", None, None)
    first = await api.request("POST", REGISTER, {"username": "alice", "password": "pw"})
    assert first.status == 401
    assert first["flows"] == [{"stages": ["m.login.registration_token"]}]
    session = first["session"]

    bad = await api.request("POST", REGISTER, {
        "username": "alice", "password": "pw",
        "auth": {"type": "m.login.registration_token", "token": "wrong", "session": session},
    })
    assert bad.status == 401
    assert bad.errcode == "M_FORBIDDEN"
    assert bad["flows"] == [{"stages": ["m.login.registration_token"]}]
    assert bad.body.get("completed", []) == []
    assert await _user_count(api) == 0

    good = await api.request("POST", REGISTER, {
        "username": "alice", "password": "pw",
        "auth": {"type": "m.login.registration_token", "token": "letmein", "session": session},
    })
    assert good.status == 200, good
    assert good["user_id"] == "@alice:test.local"

    # The dummy stage does not stand in for the token.
    r = await api.request("POST", REGISTER, {
        "username": "bob", "password": "pw", "auth": {"type": "m.login.dummy"},
    })
    assert r.status == 401
    assert await _user_count(api) == 1


@pytest.mark.parametrize("config_overrides", [TOKEN_GATED])
async def test_spent_and_expired_tokens(api):
    await api.services.registration.create_token("once", 1, None)
    assert (await api.request("GET", VALIDITY, params={"token": "once"})).body == {"valid": True}
    r = await api.request("POST", REGISTER, {
        "username": "alice", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "once"},
    })
    assert r.status == 200
    again = await api.request("POST", REGISTER, {
        "username": "bob", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "once"},
    })
    assert again.status == 401
    assert again.errcode == "M_FORBIDDEN"
    assert await _user_count(api) == 1
    assert (await api.request("GET", VALIDITY, params={"token": "once"})).body == {"valid": False}

    # An expired token is refused too.
    await api.services.registration.create_token("old", None, 1000)
    assert (await api.request("GET", VALIDITY, params={"token": "old"})).body == {"valid": False}
    r = await api.request("POST", REGISTER, {
        "username": "carol", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "old"},
    })
    assert r.status == 401
    assert r.errcode == "M_FORBIDDEN"
    assert await _user_count(api) == 1

    # Unknown tokens are invalid; the token parameter is required.
    assert (await api.request("GET", VALIDITY, params={"token": "unknown"})).body == {"valid": False}
    r = await api.request("GET", VALIDITY)
    assert r.status == 400
    assert r.errcode == "M_MISSING_PARAM"


@pytest.mark.parametrize("config_overrides", [TOKEN_GATED])
async def test_failed_registration_does_not_use_up_the_token(api):
    # A registration refused after the token stage must not spend the token.
    await api.services.registration.create_token("once", 1, None)
    await api.services.accounts.create_account("alice", "pw")
    for body in (
        {"username": "alice", "password": "pw"},      # taken
        {"username": "bob"},                         # no password
        {"username": "bob", "password": "x" * 1000},  # password too long
    ):
        r = await api.request("POST", REGISTER, {
            **body, "auth": {"type": "m.login.registration_token", "token": "once"},
        })
        assert r.status == 400, r
    assert (await api.request("GET", VALIDITY, params={"token": "once"})).body == {"valid": True}
    r = await api.request("POST", REGISTER, {
        "username": "bob", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "once"},
    })
    assert r.status == 200

