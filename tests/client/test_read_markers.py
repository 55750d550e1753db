"""Fully read markers: POST /rooms/{roomId}/read_markers, the m.fully_read room account
data it keeps, and the unread counts of /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#fully-read-markers
"""

from __future__ import annotations

import json

from tests.client.ephemeral_helpers import V3, receipts, room_with, send_receipt


def marker_path(user, room_id: str) -> str:
    return f"{V3}/user/{user.user_id}/rooms/{room_id}/account_data/m.fully_read"


async def stored(services) -> tuple[list, list]:
    receipts_rows = await services.db.fetch("SELECT user_id, receipt_type, event_id FROM receipts ORDER BY 1, 2")
    markers = await services.db.fetch("SELECT user_id, content FROM account_data WHERE type = 'm.fully_read'")
    return [tuple(r) for r in receipts_rows], [tuple(r) for r in markers]


async def test_read_markers_set_marker_and_receipts(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    first = await bob.send_text(room, "first")
    second = await bob.send_text(room, "second")
    first_bob = await bob.sync()
    first_alice = await alice.sync()
    r = await alice.post(f"{V3}/rooms/{room}/read_markers", {
        "m.fully_read": first, "m.read": second, "m.read.private": second,
    })
    assert r.status == 200 and r.body == {}, r

    marker = await alice.get(marker_path(alice, room))
    assert marker.status == 200 and marker.body == {"event_id": first}
    own = await alice.sync(since=first_alice["next_batch"])
    section = own["rooms"]["join"][room]
    assert section["account_data"]["events"] == [{"type": "m.fully_read", "content": {"event_id": first}}]
    assert set(receipts(own, room)[second]) == {"m.read", "m.read.private"}
    # Bob sees the public receipt, neither the private one nor alice's marker.
    theirs = await bob.sync(since=first_bob["next_batch"])
    assert receipts(theirs, room) == {second: {"m.read": {alice.user_id: receipts(theirs, room)[second]["m.read"][
        alice.user_id]}}}
    assert theirs["rooms"]["join"][room]["account_data"]["events"] == []
    r = await bob.get(marker_path(alice, room))
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_each_field_is_optional(api, services):
    alice = await api.register("alice")
    room = await alice.create_room()
    message = await alice.send_text(room, "hello")
    r = await alice.post(f"{V3}/rooms/{room}/read_markers", {})
    assert r.status == 200 and r.body == {}
    assert await stored(services) == ([], [])
    r = await alice.post(f"{V3}/rooms/{room}/read_markers", {"m.read": message})
    assert r.status == 200 and r.body == {}
    assert await stored(services) == ([(alice.user_id, "m.read", message)], [])
    r = await alice.post(f"{V3}/rooms/{room}/read_markers", {"m.fully_read": message})
    assert r.status == 200
    assert (await alice.get(marker_path(alice, room))).body == {"event_id": message}


async def test_the_marker_only_moves_forward(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    older = await alice.send_text(room, "one")
    newer = await alice.send_text(room, "two")
    await alice.post(f"{V3}/rooms/{room}/read_markers", {"m.fully_read": newer})
    first = await alice.sync()
    r = await alice.post(f"{V3}/rooms/{room}/read_markers", {"m.fully_read": older})
    assert r.status == 200 and r.body == {}
    assert (await alice.get(marker_path(alice, room))).body == {"event_id": newer}
    assert room not in (await alice.sync(since=first["next_batch"]))["rooms"]["join"]
    # The receipt endpoint's m.fully_read is the same marker.
    assert (await send_receipt(alice, room, older, "m.fully_read")).status == 200
    assert (await alice.get(marker_path(alice, room))).body == {"event_id": newer}


async def test_clients_cannot_set_the_marker_as_account_data(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    message = await alice.send_text(room, "hello")
    await alice.post(f"{V3}/rooms/{room}/read_markers", {"m.fully_read": message})
    r = await alice.put(marker_path(alice, room), {"event_id": "$elsewhere"})
    assert r.status == 405 and r.errcode == "M_BAD_JSON", r
    assert (await alice.get(marker_path(alice, room))).body == {"event_id": message}


async def test_bad_read_markers_are_refused_and_store_nothing(api, services):
    alice = await api.register("alice")
    outsider = await api.register("outsider")
    room = await alice.create_room(preset="public_chat")
    other_room = await alice.create_room()
    message = await alice.send_text(room, "hello")
    elsewhere = await alice.send_text(other_room, "elsewhere")
    path = f"{V3}/rooms/{room}/read_markers"

    r = await outsider.post(path, {"m.fully_read": message})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    r = await alice.post(f"{V3}/rooms/!unknown:test.local/read_markers", {"m.fully_read": message})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    # One unknown event refuses the whole request: the valid fields are not stored either.
    for body in (
        {"m.fully_read": "$unknown"},
        {"m.fully_read": message, "m.read": elsewhere},
        {"m.read": message, "m.read.private": "$unknown"},
        {"m.fully_read": message, "m.read": "no-event-id"},
    ):
        r = await alice.post(path, body)
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", (body, r)
    for body in ({"m.fully_read": 1}, {"m.read": ["$x"]}, {"m.fully_read": message, "m.read.private": {}}):
        r = await alice.post(path, body)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (body, r)
    r = await alice.post(path, raw=b"not json")
    assert r.status == 400 and r.errcode == "M_NOT_JSON", r
    r = await alice.post(path, raw=b'"m.fully_read"')
    assert r.status == 400 and r.errcode == "M_BAD_JSON", r
    r = await alice.post(f"{V3}/rooms/not-a-room/read_markers", {"m.fully_read": message})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r

    assert await stored(services) == ([], [])
    r = await alice.get(marker_path(alice, room))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_unread_counts_stay_well_formed(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    await bob.send_text(room, "unread")
    plain = (await alice.sync())["rooms"]["join"][room]
    # Bob's message notifies alice (push rule .m.rule.room_one_to_one).
    assert plain["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert "unread_thread_notifications" not in plain
    threads = json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}})
    first = await alice.sync(filter=threads)
    section = first["rooms"]["join"][room]
    assert section["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert section["unread_thread_notifications"] == {}
    # Incremental syncs too; a filter with a wrong type is refused.
    await bob.send_text(room, "more")
    later = (await alice.sync(since=first["next_batch"], filter=threads))["rooms"]["join"][room]
    assert later["unread_notifications"] == {"notification_count": 2, "highlight_count": 0}
    assert later["unread_thread_notifications"] == {}
    bad = json.dumps({"room": {"timeline": {"unread_thread_notifications": "yes"}}})
    r = await alice.get(f"{V3}/sync", params={"filter": bad})
    assert r.status == 400, r
