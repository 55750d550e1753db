"""Rooms of versions 1-5 allow floats in events (strict canonical JSON came with v6)."""

from __future__ import annotations

from urllib.parse import quote


async def test_a_float_in_a_version_5_room_is_stored_and_served_as_sent(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(room_version="5")
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/org.example.reading/t1"
    sent = await alice.put(path, {"celsius": 21.5, "count": 3})
    assert sent.status == 200, sent
    event = await alice.get(f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/event/"
                            f"{quote(sent['event_id'], safe='')}")
    assert event.status == 200 and event["content"] == {"celsius": 21.5, "count": 3}
    # The stored event still checks out: its content hash covers the float as sent.
    stored = await api.services.events.get_event(sent["event_id"])
    from homeserver.protocol.signing import check_content_hash
    assert check_content_hash(stored.json)


async def test_a_float_in_a_version_10_room_is_refused(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(room_version="10")
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/org.example.reading/t1"
    sent = await alice.put(path, {"celsius": 21.5})
    assert sent.status == 400 and sent.errcode == "M_BAD_JSON"
