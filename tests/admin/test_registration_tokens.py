"""Registration tokens: Synapse's docs/admin_api/registration_tokens.md."""

from __future__ import annotations

import time

from tests.admin.helpers import TOKEN_FIELDS, V1, assert_admin_only, make_admin

TOKENS = V1 + "/registration_tokens"


async def test_token_endpoints_are_admin_only(api):
    alice = await api.register("alice")
    for method, path, body in [
        ("GET", TOKENS, None), ("POST", TOKENS + "/new", {}), ("GET", TOKENS + "/abc", None),
        ("PUT", TOKENS + "/abc", {"uses_allowed": 1}), ("DELETE", TOKENS + "/abc", None),
    ]:
        await assert_admin_only(api, method, path, body, user=alice)


async def test_token_crud(api):
    admin = await make_admin(api)
    r = await admin.post(TOKENS + "/new", {})
    assert r.status == 200, r
    assert set(r.body) == TOKEN_FIELDS and len(r["token"]) == 16
    assert r["uses_allowed"] is None and r["pending"] == 0 and r["completed"] == 0 and r["expiry_time"] is None
    later = int(time.time() * 1000) + 3_600_000
    r = await admin.post(TOKENS + "/new", {"token": "family-2026", "uses_allowed": 2, "expiry_time": later})
    assert r.body == {"token": "family-2026", "uses_allowed": 2, "pending": 0, "completed": 0, "expiry_time": later}
    r = await admin.post(TOKENS + "/new", {"length": 40})
    assert len(r["token"]) == 40
    exhausted = (await admin.post(TOKENS + "/new", {"uses_allowed": 0}))["token"]

    r = await admin.get(TOKENS)
    assert r.status == 200 and len(r["registration_tokens"]) == 4
    assert all(set(t) == TOKEN_FIELDS for t in r["registration_tokens"])
    r = await admin.get(TOKENS, params={"valid": "false"})
    assert [t["token"] for t in r["registration_tokens"]] == [exhausted]
    r = await admin.get(TOKENS, params={"valid": "true"})
    assert exhausted not in {t["token"] for t in r["registration_tokens"]} and len(r["registration_tokens"]) == 3

    assert (await admin.get(TOKENS + "/family-2026")).body["uses_allowed"] == 2
    r = await admin.put(TOKENS + "/family-2026", {"uses_allowed": 5, "expiry_time": None})
    assert r.body == {"token": "family-2026", "uses_allowed": 5, "pending": 0, "completed": 0, "expiry_time": None}
    r = await admin.put(TOKENS + "/family-2026", {})
    assert r["uses_allowed"] == 5
    assert (await admin.delete(TOKENS + "/family-2026")).body == {}
    assert (await admin.get(TOKENS + "/family-2026")).errcode == "M_NOT_FOUND"
    assert (await admin.delete(TOKENS + "/family-2026")).errcode == "M_NOT_FOUND"
    assert (await admin.put(TOKENS + "/family-2026", {"uses_allowed": 1})).errcode == "M_NOT_FOUND"


async def test_token_validation(api):
    admin = await make_admin(api)
    await admin.post(TOKENS + "/new", {"token": "taken"})
    for body in ({"token": "taken"}, {"token": "has space"}, {"token": "x" * 65}, {"token": 5},
                 {"uses_allowed": -1}, {"uses_allowed": "3"}, {"uses_allowed": True}, {"expiry_time": 1},
                 {"expiry_time": "soon"}, {"length": 0}, {"length": 65}, {"length": "8"}):
        r = await admin.post(TOKENS + "/new", body)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (body, r)
    for body in ({"uses_allowed": -2}, {"expiry_time": 5}):
        r = await admin.put(TOKENS + "/taken", body)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (body, r)
    r = await admin.request("POST", TOKENS + "/new", raw=b"[1, 2]")
    assert r.status == 400


async def test_a_created_token_lets_someone_register(api):
    admin = await make_admin(api)
    token = (await admin.post(TOKENS + "/new", {"uses_allowed": 1}))["token"]
    assert await api.services.registration.token_is_usable(token, int(time.time() * 1000))
    assert not await api.services.registration.token_is_usable("nope", int(time.time() * 1000))
