"""Server-side key backups. Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups"""

from __future__ import annotations

from tests.client.e2e_helpers import V3

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
AUTH = {"public_key": "abcdefg", "signatures": {}}
ROOM = "!room:localhost"


def key(index: int, forwarded: int = 0, verified: bool = False, data: str = "x") -> dict:
    return {"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ciphertext": data}}


async def _create(user) -> str:
    r = await user.post(f"{V3}/room_keys/version", {"algorithm": ALGORITHM, "auth_data": AUTH})
    assert r.status == 200, r
    return r["version"]


async def test_versions_lifecycle(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await alice.get(f"{V3}/room_keys/version")
    assert (r.status, r.errcode, r["error"]) == (404, "M_NOT_FOUND", "No current backup version")

    first = await _create(alice)
    second = await _create(alice)
    assert int(second) > int(first)
    r = await alice.get(f"{V3}/room_keys/version")
    assert r.body == {"algorithm": ALGORITHM, "auth_data": AUTH, "count": 0, "etag": "0", "version": second}
    assert (await alice.get(f"{V3}/room_keys/version/{first}"))["version"] == first
    # Another user's backups are not Alice's.
    assert (await bob.get(f"{V3}/room_keys/version")).status == 404
    assert (await bob.get(f"{V3}/room_keys/version/{first}")).status == 404

    new_auth = {"public_key": "hijk", "signatures": {}}
    r = await alice.put(f"{V3}/room_keys/version/{second}", {"algorithm": ALGORITHM, "auth_data": new_auth,
                                                               "version": second})
    assert r.status == 200, r
    assert (await alice.get(f"{V3}/room_keys/version"))["auth_data"] == new_auth
    for body in ({"algorithm": "other", "auth_data": AUTH}, {"algorithm": ALGORITHM, "auth_data": AUTH, "version": first}):
        r = await alice.put(f"{V3}/room_keys/version/{second}", body)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), r
    r = await alice.put(f"{V3}/room_keys/version/{second}", {"algorithm": ALGORITHM})
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")
    assert (await alice.get(f"{V3}/room_keys/version"))["auth_data"] == new_auth
    r = await alice.put(f"{V3}/room_keys/version/999", {"algorithm": ALGORITHM, "auth_data": AUTH})
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await alice.post(f"{V3}/room_keys/version", {"algorithm": ALGORITHM})
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")

    r = await alice.delete(f"{V3}/room_keys/version/{second}")
    assert r.status == 200, r
    assert (await alice.get(f"{V3}/room_keys/version"))["version"] == first
    assert (await alice.delete(f"{V3}/room_keys/version/{second}")).status == 404
    assert (await alice.get(f"{V3}/room_keys/version/nonsense")).errcode == "M_NOT_FOUND"
    # Numbers of deleted versions are not handed out again.
    assert int(await _create(alice)) > int(second)


async def test_keys_store_replace_and_delete(api):
    alice = await api.register("alice")
    version = await _create(alice)
    r = await alice.put(f"{V3}/room_keys/keys", {"rooms": {ROOM: {"sessions": {"s1": key(5), "s2": key(0)}}}},
                        params={"version": version})
    assert r.status == 200, r
    assert r.body == {"count": 2, "etag": "1"}

    # A worse key does not replace a better one (and leaves the etag alone); a better one does.
    r = await alice.put(f"{V3}/room_keys/keys/{ROOM}/s1", key(9, data="worse"), params={"version": version})
    assert r.body == {"count": 2, "etag": "1"}
    r = await alice.put(f"{V3}/room_keys/keys/{ROOM}/s1", key(3, data="better"), params={"version": version})
    assert r.body == {"count": 2, "etag": "2"}
    r = await alice.put(f"{V3}/room_keys/keys/{ROOM}/s1", key(7, verified=True, data="verified"),
                        params={"version": version})
    assert r["etag"] == "3"
    r = await alice.put(f"{V3}/room_keys/keys/{ROOM}", {"sessions": {"s1": key(0, data="unverified")}},
                        params={"version": version})
    assert r["etag"] == "3"

    got = await alice.get(f"{V3}/room_keys/keys/{ROOM}/s1", params={"version": version})
    assert got.body == key(7, verified=True, data="verified")
    all_keys = await alice.get(f"{V3}/room_keys/keys", params={"version": version})
    assert all_keys.body == {"rooms": {ROOM: {"sessions": {"s1": key(7, verified=True, data="verified"),
                                                         "s2": key(0)}}}}
    assert (await alice.get(f"{V3}/room_keys/keys/{ROOM}", params={"version": version})).body == \
        all_keys["rooms"][ROOM]
    assert (await alice.get(f"{V3}/room_keys/keys/!other:localhost", params={"version": version})).body == \
        {"sessions": {}}
    r = await alice.get(f"{V3}/room_keys/keys/{ROOM}/nope", params={"version": version})
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert (await alice.get(f"{V3}/room_keys/version"))["count"] == 2

    r = await alice.delete(f"{V3}/room_keys/keys/{ROOM}/s2", params={"version": version})
    assert r.body == {"count": 1, "etag": "4"}
    r = await alice.delete(f"{V3}/room_keys/keys", params={"version": version})
    assert r.body == {"count": 0, "etag": "5"}


async def test_keys_refused(api):
    alice = await api.register("alice")
    old = await _create(alice)
    current = await _create(alice)
    body = {"rooms": {ROOM: {"sessions": {"s1": key(0)}}}}
    # Only the current backup takes keys; the answer names it.
    r = await alice.put(f"{V3}/room_keys/keys", body, params={"version": old})
    assert (r.status, r.errcode, r["current_version"]) == (403, "M_WRONG_ROOM_KEYS_VERSION", current)
    r = await alice.put(f"{V3}/room_keys/keys", body)
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")
    for bad in (key(-1), key(0, verified="yes"), {**key(0), "session_data": "x"}, {"first_message_index": 0}):
        r = await alice.put(f"{V3}/room_keys/keys/{ROOM}/s1", bad, params={"version": current})
        assert r.status == 400, (bad, r)
    r = await alice.get(f"{V3}/room_keys/keys", params={"version": "999"})
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert (await alice.get(f"{V3}/room_keys/keys", params={"version": current})).body == {"rooms": {}}
    # Deleting the version deletes its keys; putting to it is then refused.
    await alice.put(f"{V3}/room_keys/keys", body, params={"version": current})
    await alice.delete(f"{V3}/room_keys/version/{current}")
    r = await alice.put(f"{V3}/room_keys/keys", body, params={"version": current})
    assert (r.status, r.errcode, r["current_version"]) == (403, "M_WRONG_ROOM_KEYS_VERSION", old)
    assert await api.services.db.fetchval("SELECT count(*) FROM e2e_room_keys") == 0
    await alice.delete(f"{V3}/room_keys/version/{old}")
    r = await alice.put(f"{V3}/room_keys/keys", body, params={"version": old})
    assert (r.status, r.errcode) == (403, "M_WRONG_ROOM_KEYS_VERSION")
    assert "current_version" not in r.body
