"""OpenID tokens: POST /user/{userId}/openid/request_token and the federation GET /openid/userinfo.

Spec: https://spec.matrix.org/v1.19/client-server-api/#openid and
https://spec.matrix.org/v1.19/server-server-api/#openid
"""

from __future__ import annotations

from urllib.parse import quote

from homeserver.services.auth import hash_token

USERINFO = "/_matrix/federation/v1/openid/userinfo"


def _request_token_path(user_id: str, version: str = "v3") -> str:
    return f"/_matrix/client/{version}/user/{quote(user_id, safe='')}/openid/request_token"


async def test_a_token_names_its_user_to_whoever_asks(api):
    alice = await api.register("alice")
    r = await alice.post(_request_token_path(alice.user_id), {})
    assert r.status == 200, r
    assert r["token_type"] == "Bearer" and r["matrix_server_name"] == "test.local" and r["expires_in"] == 3600
    token = r["access_token"]
    assert isinstance(token, str) and len(token) >= 32

    # No X-Matrix signature: the token is the authentication.
    r = await api.request("GET", USERINFO, params={"access_token": token})
    assert (r.status, r.body) == (200, {"sub": alice.user_id})

    # Only its hash is stored.
    stored = await api.services.db.fetch("SELECT token_hash, user_id FROM openid_tokens")
    assert [(bytes(row["token_hash"]), row["user_id"]) for row in stored] == [(hash_token(token), alice.user_id)]

    # Each request gives a new token; r0 is served too, and an empty body is accepted.
    r = await api.request("POST", _request_token_path(alice.user_id, "r0"), raw=b"", token=alice.access_token)
    assert r.status == 200 and r["access_token"] != token


async def test_an_openid_token_is_no_access_token(api):
    alice = await api.register("alice")
    token = (await alice.post(_request_token_path(alice.user_id), {}))["access_token"]
    r = await api.request("GET", "/_matrix/client/v3/account/whoami", token=token)
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN"), r
    r = await api.request("POST", _request_token_path(alice.user_id), {}, token=token)
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN"), r
    # Nor is an access token an OpenID token.
    r = await api.request("GET", USERINFO, params={"access_token": alice.access_token})
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN"), r


async def test_bad_requests_store_nothing(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await alice.post(_request_token_path(bob.user_id), {})
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r
    r = await api.request("POST", _request_token_path(alice.user_id), {})
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), r
    r = await api.request("POST", _request_token_path(alice.user_id), raw=b"{not json", token=alice.access_token)
    assert (r.status, r.errcode) == (400, "M_NOT_JSON"), r
    r = await alice.post(_request_token_path(alice.user_id), ["a list"])
    assert (r.status, r.errcode) == (400, "M_BAD_JSON"), r
    assert await api.services.db.fetchval("SELECT count(*) FROM openid_tokens") == 0

    r = await api.request("GET", USERINFO)
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), r
    r = await api.request("GET", USERINFO, params={"access_token": "made-up"})
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN"), r


async def test_expired_tokens_and_deactivated_users_are_unknown(api):
    alice = await api.register("alice")
    bob = await api.register("bob", password="bobs password 1")
    expired = (await alice.post(_request_token_path(alice.user_id), {}))["access_token"]
    await api.services.db.execute("UPDATE openid_tokens SET expires_ts = 1")
    r = await api.request("GET", USERINFO, params={"access_token": expired})
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN"), r
    # A new token clears away the expired ones.
    fresh = (await alice.post(_request_token_path(alice.user_id), {}))["access_token"]
    assert await api.services.db.fetchval("SELECT count(*) FROM openid_tokens") == 1
    r = await api.request("GET", USERINFO, params={"access_token": fresh})
    assert r.status == 200, r

    bobs = (await bob.post(_request_token_path(bob.user_id), {}))["access_token"]
    r = await bob.post("/_matrix/client/v3/account/deactivate", {
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
                 "password": "bobs password 1"}})
    assert r.status == 200, r
    r = await api.request("GET", USERINFO, params={"access_token": bobs})
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN"), r
