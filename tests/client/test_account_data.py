"""Client config (account data), global and per room, and its delivery by /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#client-config
"""

from __future__ import annotations

import asyncio

V3 = "/_matrix/client/v3"


def global_path(user_id: str, data_type: str) -> str:
    return f"{V3}/user/{user_id}/account_data/{data_type}"


def room_path(user_id: str, room_id: str, data_type: str) -> str:
    return f"{V3}/user/{user_id}/rooms/{room_id}/account_data/{data_type}"


async def stored_rows(services) -> int:
    return await services.db.fetchval("SELECT count(*) FROM account_data")


async def test_global_put_and_get(api):
    alice = await api.register("alice")
    path = global_path(alice.user_id, "org.example.settings")
    r = await alice.put(path, {"theme": "dark", "nested": {"a": [1, 2]}})
    assert r.status == 200 and r.body == {}
    r = await alice.get(path)
    assert r.status == 200 and r.body == {"theme": "dark", "nested": {"a": [1, 2]}}
    # A second PUT replaces the content; it does not merge.
    r = await alice.put(path, {"font": "large"})
    assert r.status == 200
    assert (await alice.get(path)).body == {"font": "large"}


async def test_unknown_type_is_404(api):
    alice = await api.register("alice")
    r = await alice.get(global_path(alice.user_id, "org.example.nothing"))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    room_id = await alice.create_room()
    r = await alice.get(room_path(alice.user_id, room_id, "org.example.nothing"))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_room_and_global_data_are_separate(api):
    alice = await api.register("alice")
    room_a = await alice.create_room()
    room_b = await alice.create_room()
    r = await alice.put(room_path(alice.user_id, room_a, "org.example.note"), {"text": "a"})
    assert r.status == 200 and r.body == {}
    assert (await alice.get(room_path(alice.user_id, room_a, "org.example.note"))).body == {"text": "a"}
    r = await alice.get(room_path(alice.user_id, room_b, "org.example.note"))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await alice.get(global_path(alice.user_id, "org.example.note"))
    assert r.status == 404
    await alice.put(global_path(alice.user_id, "org.example.note"), {"text": "global"})
    assert (await alice.get(room_path(alice.user_id, room_a, "org.example.note"))).body == {"text": "a"}
    assert (await alice.get(global_path(alice.user_id, "org.example.note"))).body == {"text": "global"}


async def test_other_users_data_is_forbidden(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.put(global_path(alice.user_id, "org.example.secret"), {"x": 1})
    await alice.put(room_path(alice.user_id, room_id, "org.example.secret"), {"x": 2})
    rows = await stored_rows(services)

    for r in (
        await bob.get(global_path(alice.user_id, "org.example.secret")),
        await bob.put(global_path(alice.user_id, "org.example.secret"), {"x": 666}),
        await bob.get(room_path(alice.user_id, room_id, "org.example.secret")),
        await bob.put(room_path(alice.user_id, room_id, "org.example.secret"), {"x": 666}),
    ):
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await stored_rows(services) == rows
    assert (await alice.get(global_path(alice.user_id, "org.example.secret"))).body == {"x": 1}
    assert (await alice.get(room_path(alice.user_id, room_id, "org.example.secret"))).body == {"x": 2}


async def test_server_managed_types_are_refused(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    for data_type in ("m.fully_read", "m.push_rules"):
        for path in (global_path(alice.user_id, data_type), room_path(alice.user_id, room_id, data_type)):
            r = await alice.put(path, {"event_id": "$x"})
            assert r.status == 405 and r.errcode == "M_BAD_JSON", (path, r)
    assert await stored_rows(services) == 0


async def test_bad_bodies_and_ids(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    path = global_path(alice.user_id, "org.example.x")
    r = await api.request("PUT", path, raw=b"nope", token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await api.request("PUT", path, raw=b"[1]", token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.request("PUT", room_path(alice.user_id, room_id, "org.example.x"), raw=b"",
                          token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await alice.put(room_path(alice.user_id, "not-a-room", "org.example.x"), {"a": 1})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await alice.get(room_path(alice.user_id, "not-a-room", "org.example.x"))
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await alice.put(global_path(alice.user_id, "t" * 300), {"a": 1})
    assert r.status == 400 and r.errcode is not None
    assert await stored_rows(services) == 0
    r = await api.request("GET", path)
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


async def test_account_data_in_initial_sync(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    await alice.put(global_path(alice.user_id, "org.example.global"), {"g": 1})
    await alice.put(room_path(alice.user_id, room_id, "org.example.room"), {"r": 1})
    sync = await alice.sync()
    assert {"type": "org.example.global", "content": {"g": 1}} in sync["account_data"]["events"]
    room_events = sync["rooms"]["join"][room_id]["account_data"]["events"]
    assert room_events == [{"type": "org.example.room", "content": {"r": 1}}]
    # Room data is not global data.
    assert all(e["type"] != "org.example.room" for e in sync["account_data"]["events"])


async def test_account_data_in_incremental_sync(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    await alice.put(global_path(alice.user_id, "org.example.old"), {"old": True})
    first = await alice.sync()

    await alice.put(global_path(alice.user_id, "org.example.new"), {"n": 1})
    await alice.put(room_path(alice.user_id, room_id, "org.example.tag"), {"t": 1})
    second = await alice.sync(since=first["next_batch"])
    assert second["account_data"]["events"] == [{"type": "org.example.new", "content": {"n": 1}}]
    assert second["rooms"]["join"][room_id]["account_data"]["events"] == [
        {"type": "org.example.tag", "content": {"t": 1}}]
    # No new messages: the room is there for its account data only.
    assert second["rooms"]["join"][room_id]["timeline"]["events"] == []

    third = await alice.sync(since=second["next_batch"])
    assert third["account_data"]["events"] == []
    assert room_id not in third["rooms"]["join"]


async def test_account_data_is_private_to_its_user(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.put(global_path(alice.user_id, "org.example.mine"), {"a": 1})
    await alice.put(room_path(alice.user_id, room_id, "org.example.mine"), {"a": 2})
    sync = await bob.sync()
    assert all(e["type"] != "org.example.mine" for e in sync["account_data"]["events"])
    assert sync["rooms"]["join"][room_id]["account_data"]["events"] == []


async def test_put_wakes_a_waiting_sync(api):
    alice = await api.register("alice")
    first = await alice.sync()
    waiting = asyncio.create_task(alice.sync(since=first["next_batch"], timeout=30_000))
    await asyncio.sleep(0)  # let the long poll start before the change
    await alice.put(global_path(alice.user_id, "org.example.ping"), {"p": 1})
    result = await waiting
    assert result["account_data"]["events"] == [{"type": "org.example.ping", "content": {"p": 1}}]
