"""Refresh tokens and expiring access tokens.

Spec: https://spec.matrix.org/v1.19/client-server-api/#refreshing-access-tokens
"""

from __future__ import annotations

import pytest

from homeserver.services.auth import hash_token

REFRESH = "/_matrix/client/v3/refresh"
WHOAMI = "/_matrix/client/v3/account/whoami"
REGISTER = "/_matrix/client/v3/register"
PW = "correct horse battery"


async def _expire(api, access_token: str) -> None:
    """Make a token's lifetime run out (no waiting: tests assert no timings)."""
    token_hash = hash_token(access_token)
    await api.services.db.execute("UPDATE access_tokens SET expires_ts = 1 WHERE token_hash = $1", token_hash)
    api.services.tokens.forget([token_hash])


async def _whoami(api, token: str):
    return await api.request("GET", WHOAMI, token=token)


async def test_login_with_refresh_token_then_refresh_rotates(api):
    await api.register("alice")
    r = await api.login("alice", refresh_token=True)
    assert r.status == 200, r
    assert r["refresh_token"].startswith("syr_") and r["expires_in_ms"] == 300_000
    access, refresh, device = r["access_token"], r["refresh_token"], r["device_id"]
    # Only hashes are stored.
    stored = await api.services.db.fetchval("SELECT token_hash FROM refresh_tokens")
    assert stored == hash_token(refresh)

    await _expire(api, access)
    expired = await _whoami(api, access)
    assert expired.status == 401
    assert expired.body["errcode"] == "M_UNKNOWN_TOKEN" and expired.body["soft_logout"] is True

    new = await api.request("POST", REFRESH, {"refresh_token": refresh})
    assert new.status == 200, new
    assert set(new.body) == {"access_token", "refresh_token", "expires_in_ms"}
    assert new["access_token"] != access and new["refresh_token"] != refresh
    me = await _whoami(api, new["access_token"])
    assert me.status == 200 and me.body["device_id"] == device

    # The old refresh token died with the first use of the new access token.
    again = await api.request("POST", REFRESH, {"refresh_token": refresh})
    assert again.status == 401 and again.errcode == "M_UNKNOWN_TOKEN"
    assert again.body["soft_logout"] is False
    # The new one rotates again.
    third = await api.request("POST", REFRESH, {"refresh_token": new["refresh_token"]})
    assert third.status == 200
    assert (await _whoami(api, third["access_token"])).status == 200
    assert (await _whoami(api, new["access_token"])).status == 401


async def test_old_refresh_token_works_until_the_new_access_token_is_used(api):
    """As Synapse: a client that lost the answer of /refresh may retry."""
    await api.register("alice")
    r = await api.login("alice", refresh_token=True)
    first = await api.request("POST", REFRESH, {"refresh_token": r["refresh_token"]})
    assert first.status == 200
    # The old access token still works until the new one is used.
    assert (await _whoami(api, r["access_token"])).status == 200
    retry = await api.request("POST", REFRESH, {"refresh_token": r["refresh_token"]})
    assert retry.status == 200
    # Only the newest answer counts: the first successor is gone.
    assert (await _whoami(api, first["access_token"])).status == 401
    assert (await _whoami(api, retry["access_token"])).status == 200
    assert (await _whoami(api, r["access_token"])).status == 401
    assert (await api.request("POST", REFRESH, {"refresh_token": r["refresh_token"]})).status == 401


async def test_tokens_without_refresh_never_expire(api):
    alice = await api.register("alice")
    assert await api.services.db.fetchval(
        "SELECT expires_ts FROM access_tokens WHERE token_hash = $1", hash_token(alice.access_token)
    ) is None
    r = await api.login("alice")
    assert "refresh_token" not in r.body and "expires_in_ms" not in r.body


async def test_register_with_refresh_token(api):
    r = await api.request("POST", REGISTER, {
        "username": "bob", "password": PW, "auth": {"type": "m.login.dummy"}, "refresh_token": True,
    })
    assert r.status == 200, r
    assert r["refresh_token"] and r["expires_in_ms"] == 300_000
    new = await api.request("POST", REFRESH, {"refresh_token": r["refresh_token"]})
    assert new.status == 200
    # inhibit_login hands out nothing.
    r = await api.request("POST", REGISTER, {
        "username": "carol", "password": PW, "auth": {"type": "m.login.dummy"}, "refresh_token": True,
        "inhibit_login": True,
    })
    assert r.status == 200 and "refresh_token" not in r.body and "access_token" not in r.body


async def test_refresh_tokens_die_with_the_device(api):
    await api.register("alice")
    r = await api.login("alice", refresh_token=True)
    logout = await api.request("POST", "/_matrix/client/v3/logout", {}, token=r["access_token"])
    assert logout.status == 200
    assert await api.services.db.fetchval("SELECT count(*) FROM refresh_tokens") == 0
    dead = await api.request("POST", REFRESH, {"refresh_token": r["refresh_token"]})
    assert dead.status == 401 and dead.errcode == "M_UNKNOWN_TOKEN"

    # A new login on the same device id replaces the device's refresh token too.
    r1 = await api.login("alice", refresh_token=True, device_id="PHONE")
    r2 = await api.login("alice", refresh_token=True, device_id="PHONE")
    assert (await api.request("POST", REFRESH, {"refresh_token": r1["refresh_token"]})).status == 401
    assert (await api.request("POST", REFRESH, {"refresh_token": r2["refresh_token"]})).status == 200


async def test_refresh_bad_input(api):
    for body in ({}, {"refresh_token": 5}, {"refresh_token": None}):
        r = await api.request("POST", REFRESH, body)
        assert r.status == 400, (body, r)
        assert r.errcode in ("M_MISSING_PARAM", "M_BAD_JSON", "M_INVALID_PARAM")
    r = await api.request("POST", REFRESH, raw=b"not json")
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await api.request("POST", REFRESH, {"refresh_token": "syr_nope"})
    assert r.status == 401 and r.errcode == "M_UNKNOWN_TOKEN"
    # An access token is no refresh token.
    alice = await api.register("alice")
    r = await api.request("POST", REFRESH, {"refresh_token": alice.access_token})
    assert r.status == 401 and r.errcode == "M_UNKNOWN_TOKEN"


async def test_deactivated_users_cannot_refresh(api):
    await api.register("alice")
    r = await api.login("alice", refresh_token=True)
    await api.services.users.set_deactivated("@alice:test.local")
    dead = await api.request("POST", REFRESH, {"refresh_token": r["refresh_token"]})
    assert dead.status == 401 and dead.errcode == "M_UNKNOWN_TOKEN"


@pytest.mark.parametrize("config_overrides", [{"access_token_lifetime": None}])
async def test_refresh_disabled_by_config(api):
    await api.register("alice")
    r = await api.login("alice", refresh_token=True)
    assert r.status == 200 and "refresh_token" not in r.body and "expires_in_ms" not in r.body
    assert (await _whoami(api, r["access_token"])).status == 200


@pytest.mark.parametrize("config_overrides", [{"access_token_lifetime": "1h"}])
async def test_lifetime_from_config(api):
    await api.register("alice")
    r = await api.login("alice", refresh_token=True)
    assert r["expires_in_ms"] == 3_600_000
