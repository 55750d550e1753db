"""Room tags: the tags API, stored as the room's m.tag account data and delivered by /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-tagging
"""

from __future__ import annotations

import asyncio

from nio.events.account_data import AccountDataEvent, TagEvent

V3 = "/_matrix/client/v3"


def tags_path(user_id: str, room_id: str, tag: str | None = None) -> str:
    path = f"{V3}/user/{user_id}/rooms/{room_id}/tags"
    return path if tag is None else f"{path}/{tag}"


async def stored_rows(services) -> int:
    return await services.db.fetchval("SELECT count(*) FROM account_data WHERE type = 'm.tag'")


def room_account_data(sync_body, room_id: str) -> list[dict]:
    return sync_body["rooms"]["join"].get(room_id, {}).get("account_data", {}).get("events", [])


async def test_put_get_delete(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    assert (await alice.get(tags_path(alice.user_id, room))).body == {"tags": {}}

    r = await alice.put(tags_path(alice.user_id, room, "m.favourite"), {"order": 0.25})
    assert r.status == 200 and r.body == {}
    r = await alice.put(tags_path(alice.user_id, room, "u.Work"), {})
    assert r.status == 200
    r = await alice.get(tags_path(alice.user_id, room))
    assert r.body == {"tags": {"m.favourite": {"order": 0.25}, "u.Work": {}}}

    # Putting a tag again replaces its object.
    await alice.put(tags_path(alice.user_id, room, "m.favourite"), {"order": 1})
    assert (await alice.get(tags_path(alice.user_id, room)))["tags"]["m.favourite"] == {"order": 1}

    r = await alice.delete(tags_path(alice.user_id, room, "m.favourite"))
    assert r.status == 200 and r.body == {}
    assert (await alice.get(tags_path(alice.user_id, room))).body == {"tags": {"u.Work": {}}}
    # Removing a tag the room does not have is not an error.
    r = await alice.delete(tags_path(alice.user_id, room, "m.lowpriority"))
    assert r.status == 200
    # The tags are the room's m.tag account data.
    r = await alice.get(f"{V3}/user/{alice.user_id}/rooms/{room}/account_data/m.tag")
    assert r.body == {"tags": {"u.Work": {}}}


async def test_an_empty_body_is_a_tag_without_order(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    r = await alice.request("PUT", tags_path(alice.user_id, room, "m.lowpriority"), raw=b"")
    assert r.status == 200, r
    assert (await alice.get(tags_path(alice.user_id, room))).body == {"tags": {"m.lowpriority": {}}}


async def test_sync_carries_m_tag_and_nio_reads_it(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    first = await alice.sync()
    await alice.put(tags_path(alice.user_id, room, "m.favourite"), {"order": 0.5})
    second = await alice.sync(since=first["next_batch"])
    events = room_account_data(second.body, room)
    assert events == [{"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}}}}]
    # matrix-nio parses a room's m.tag into a TagEvent.
    parsed = AccountDataEvent.parse_event(dict(events[0]))
    assert isinstance(parsed, TagEvent) and parsed.tags == {"m.favourite": {"order": 0.5}}
    # An initial sync has the tags too.
    initial = await alice.sync()
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}}}} in room_account_data(
        initial.body, room)

    await alice.delete(tags_path(alice.user_id, room, "m.favourite"))
    third = await alice.sync(since=second["next_batch"])
    assert room_account_data(third.body, room) == [{"type": "m.tag", "content": {"tags": {}}}]


async def test_a_tag_wakes_a_waiting_sync(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    first = await alice.sync()
    waiting = asyncio.create_task(alice.sync(since=first["next_batch"], timeout=30_000))
    await asyncio.sleep(0)  # let the long poll start before the change
    await alice.put(tags_path(alice.user_id, room, "u.later"), {})
    result = await waiting
    assert room_account_data(result.body, room) == [{"type": "m.tag", "content": {"tags": {"u.later": {}}}}]


async def test_concurrent_tags_are_all_kept(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    results = await asyncio.gather(*(
        alice.put(tags_path(alice.user_id, room, f"u.t{i}"), {"order": i / 10}) for i in range(10)
    ))
    assert all(r.status == 200 for r in results)
    tags = (await alice.get(tags_path(alice.user_id, room)))["tags"]
    assert tags == {f"u.t{i}": {"order": i / 10} for i in range(10)}


async def test_only_for_oneself(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room()
    await alice.put(tags_path(alice.user_id, room, "m.favourite"), {})
    for r in (
        await bob.get(tags_path(alice.user_id, room)),
        await bob.put(tags_path(alice.user_id, room, "u.x"), {}),
        await bob.delete(tags_path(alice.user_id, room, "m.favourite")),
    ):
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert (await alice.get(tags_path(alice.user_id, room))).body == {"tags": {"m.favourite": {}}}
    r = await api.request("GET", tags_path(alice.user_id, room))
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


async def test_bad_input_is_refused_and_nothing_stored(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    path = tags_path(alice.user_id, room, "u.x")
    cases = [
        ({"order": "0.5"}, "M_BAD_JSON"),
        ({"order": True}, "M_BAD_JSON"),
        ({"order": None}, "M_BAD_JSON"),
        ({"order": 1.5}, "M_INVALID_PARAM"),
        ({"order": -0.1}, "M_INVALID_PARAM"),
        ([0.5], "M_BAD_JSON"),
    ]
    for body, errcode in cases:
        r = await alice.put(path, body)
        assert r.status == 400 and r.errcode == errcode, (body, r)
    r = await alice.request("PUT", path, raw=b"{not json")
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    # A tag name of 256 bytes (here 128 two-byte characters) is too long; 255 bytes is not.
    r = await alice.put(tags_path(alice.user_id, room, "é" * 128), {})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await alice.put(tags_path(alice.user_id, "not-a-room", "u.x"), {})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    assert await stored_rows(api.services) == 0
    r = await alice.put(tags_path(alice.user_id, room, "a" + "é" * 127), {})
    assert r.status == 200, r
    assert await stored_rows(api.services) == 1
