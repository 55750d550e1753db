"""Pushers: GET /pushers and POST /pushers/set.

Spec: https://spec.matrix.org/v1.19/client-server-api/#client-behaviour-1
"""

from __future__ import annotations

V3 = "/_matrix/client/v3"
URL = "https://push.example.org/_matrix/push/v1/notify"


def pusher(**overrides) -> dict:
    return {
        "kind": "http", "app_id": "im.vector.app.android", "pushkey": "token-1",
        "app_display_name": "Element", "device_display_name": "Phone", "lang": "en",
        "data": {"url": URL, "format": "event_id_only", "custom": 1}, **overrides,
    }


async def test_set_list_replace_and_delete(api):
    alice = await api.register("alice")
    r = await alice.get(f"{V3}/pushers")
    assert r.status == 200 and r.body == {"pushers": []}
    assert (await alice.post(f"{V3}/pushers/set", pusher())).body == {}
    assert (await alice.post(f"{V3}/pushers/set", pusher(pushkey="token-2", profile_tag="tag"))).status == 200
    r = await alice.get(f"{V3}/pushers")
    expected = {k: v for k, v in pusher().items()}
    assert r.body["pushers"] == [expected, {**pusher(pushkey="token-2"), "profile_tag": "tag"}]
    # Same app id and pushkey: replaced.
    assert (await alice.post(f"{V3}/pushers/set", pusher(device_display_name="New phone"))).status == 200
    names = [p["device_display_name"] for p in (await alice.get(f"{V3}/pushers"))["pushers"]]
    assert names == ["New phone", "Phone"]
    # kind null deletes (also when there is nothing to delete).
    for _ in range(2):
        r = await alice.post(f"{V3}/pushers/set", {"kind": None, "app_id": "im.vector.app.android",
                                                   "pushkey": "token-1"})
        assert r.status == 200
    assert [p["pushkey"] for p in (await alice.get(f"{V3}/pushers"))["pushers"]] == ["token-2"]
    r = await api.request("GET", f"{V3}/pushers")
    assert r.status == 401


async def test_a_pushkey_moves_to_its_new_user_unless_appended(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    assert (await alice.post(f"{V3}/pushers/set", pusher())).status == 200
    assert (await bob.post(f"{V3}/pushers/set", pusher(append=True))).status == 200
    assert len((await alice.get(f"{V3}/pushers"))["pushers"]) == 1
    assert (await bob.post(f"{V3}/pushers/set", pusher())).status == 200
    assert (await alice.get(f"{V3}/pushers"))["pushers"] == []
    assert len((await bob.get(f"{V3}/pushers"))["pushers"]) == 1


async def test_invalid_pushers_are_refused(api, services):
    alice = await api.register("alice")
    no_kind = pusher()
    del no_kind["kind"]
    cases = [
        (no_kind, "M_MISSING_PARAM"),
        ({k: v for k, v in pusher().items() if k != "app_id"}, "M_MISSING_PARAM"),
        ({k: v for k, v in pusher().items() if k != "lang"}, "M_MISSING_PARAM"),
        ({k: v for k, v in pusher().items() if k != "data"}, "M_MISSING_PARAM"),
        (pusher(data={}), "M_MISSING_PARAM"),
        (pusher(kind="email"), "M_INVALID_PARAM"),
        (pusher(kind="carrier-pigeon"), "M_INVALID_PARAM"),
        (pusher(pushkey=5), "M_INVALID_PARAM"),
        (pusher(pushkey="k" * 513), "M_INVALID_PARAM"),
        (pusher(app_id="a" * 65), "M_INVALID_PARAM"),
        (pusher(data="x"), "M_INVALID_PARAM"),
        (pusher(data={"url": "https://push.example.org/other"}), "M_INVALID_PARAM"),
        (pusher(data={"url": "ftp://push.example.org/_matrix/push/v1/notify"}), "M_INVALID_PARAM"),
        (pusher(data={"url": 7}), "M_INVALID_PARAM"),
        (pusher(append="yes"), "M_INVALID_PARAM"),
        (pusher(profile_tag=1), "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        r = await alice.post(f"{V3}/pushers/set", body)
        assert r.status == 400 and r.errcode == errcode, (body, r)
    assert await services.db.fetchval("SELECT count(*) FROM pushers") == 0
