"""POST /login/get_token and m.login.token (MSC3882, spec v1.7).

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv1loginget_token
"""

from __future__ import annotations

GET_TOKEN = "/_matrix/client/v1/login/get_token"
LOGIN = "/_matrix/client/v3/login"
PW = "correct horse battery"


def _password(user_id: str, session: str, password: str = PW) -> dict:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": password, "session": session}


async def _get_token(alice) -> dict:
    first = await alice.post(GET_TOKEN, {})
    assert first.status == 401, first
    assert first["flows"] == [{"stages": ["m.login.password"]}]
    r = await alice.post(GET_TOKEN, {"auth": _password(alice.user_id, first["session"])})
    assert r.status == 200, r
    return r.body


async def test_get_token_then_login_once(api):
    alice = await api.register("alice")
    body = await _get_token(alice)
    assert set(body) == {"login_token", "expires_in_ms"} and body["expires_in_ms"] > 0
    r = await api.request("POST", LOGIN, {"type": "m.login.token", "token": body["login_token"],
                                          "initial_device_display_name": "New phone"})
    assert r.status == 200, r
    assert r["user_id"] == alice.user_id and r["device_id"] != alice.device_id
    me = await api.request("GET", "/_matrix/client/v3/account/whoami", token=r["access_token"])
    assert me.status == 200 and me["user_id"] == alice.user_id
    # Single use.
    again = await api.request("POST", LOGIN, {"type": "m.login.token", "token": body["login_token"]})
    assert again.status == 403 and again.errcode == "M_FORBIDDEN"


async def test_login_token_with_refresh_token(api):
    alice = await api.register("alice")
    body = await _get_token(alice)
    r = await api.request("POST", LOGIN, {"type": "m.login.token", "token": body["login_token"],
                                          "refresh_token": True})
    assert r.status == 200 and r["refresh_token"] and r["expires_in_ms"]


async def test_get_token_needs_the_users_own_password(api):
    alice = await api.register("alice")
    await api.register("bob")
    assert (await api.request("POST", GET_TOKEN, {})).errcode == "M_MISSING_TOKEN"
    first = await alice.post(GET_TOKEN, {})
    wrong = await alice.post(GET_TOKEN, {"auth": _password(alice.user_id, first["session"], "nope")})
    assert wrong.status == 401 and wrong.errcode == "M_FORBIDDEN"
    other = await alice.post(GET_TOKEN, {"auth": _password("@bob:test.local", first["session"])})
    assert other.status == 401 and other.errcode == "M_FORBIDDEN"
    # Another kind of stage is not accepted.
    dummy = await alice.post(GET_TOKEN, {"auth": {"type": "m.login.dummy", "session": first["session"]}})
    assert dummy.status == 401 and "login_token" not in dummy.body
    assert (await alice.post(GET_TOKEN, {"auth": "x"})).status == 400
    assert await api.services.db.fetchval("SELECT count(*) FROM login_tokens") == 0


async def test_bad_and_expired_login_tokens(api):
    alice = await api.register("alice")
    body = await _get_token(alice)
    await api.services.db.execute("UPDATE login_tokens SET expires_ts = 1")
    r = await api.request("POST", LOGIN, {"type": "m.login.token", "token": body["login_token"]})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.request("POST", LOGIN, {"type": "m.login.token", "token": 5})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.request("POST", LOGIN, {"type": "m.login.token"})
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"


async def test_advertised(api):
    alice = await api.register("alice")
    caps = await alice.get("/_matrix/client/v3/capabilities")
    assert caps["capabilities"]["m.get_login_token"] == {"enabled": True}
    flows = await api.request("GET", LOGIN)
    assert {"type": "m.login.token", "get_login_token": True} in flows["flows"]
