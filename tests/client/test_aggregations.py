"""Bundled aggregations in unsigned["m.relations"]: m.replace, m.reference (m.thread in test_threads).

Spec: https://spec.matrix.org/v1.19/client-server-api/#aggregations-of-child-events
and https://spec.matrix.org/v1.19/client-server-api/#server-side-aggregation-of-mreplace-relationships
"""

from __future__ import annotations

from tests.client.relation_helpers import (
    V3, bundled, edit, get_event, react, reference, relations, send, sent, thread_reply,
)
from tests.client.sync_helpers import messages, send_state, timeline


async def _edit_ids_by_recency(user, room_id, edit_ids):
    """Spec order: newest origin_server_ts first, ties to the lexicographically largest event id."""
    events = [await get_event(user, room_id, i) for i in edit_ids]
    return [e["event_id"] for e in sorted(events, key=lambda e: (e["origin_server_ts"], e["event_id"]), reverse=True)]


async def test_latest_edit_is_bundled_everywhere(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    original = await alice.send_text(room, "helo")
    edits = [await edit(alice, room, original, "hello"), await edit(alice, room, original, "hello!")]
    latest = (await _edit_ids_by_recency(alice, room, edits))[0]

    event = await get_event(alice, room, original)
    replace = bundled(event)["m.replace"]
    assert replace["event_id"] == latest
    assert replace["sender"] == alice.user_id and replace["type"] == "m.room.message"
    assert replace["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": original}
    assert "m.new_content" in replace["content"]
    # Spec (v1.7): the original's content is left as it was.
    assert event["content"]["body"] == "helo"

    chunk = (await messages(alice, room, dir="b", limit=10))["chunk"]
    served = {e["event_id"]: e for e in chunk}
    assert bundled(served[original])["m.replace"]["event_id"] == latest
    # The edits themselves are not edited.
    assert all("m.relations" not in served[i]["unsigned"] for i in edits)

    r = await alice.get(f"{V3}/rooms/{room}/context/{original}", params={"limit": "4"})
    assert r.status == 200, r
    assert bundled(r["event"])["m.replace"]["event_id"] == latest


async def test_only_valid_edits_are_bundled(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    original = await alice.send_text(room, "alice's words")

    # Another user's edit is sent (the server does not refuse it) but ignored.
    await edit(bob, room, original, "bob's words")
    assert "m.relations" not in (await get_event(alice, room, original))["unsigned"]
    # So is an edit that changes the event type, or carries no m.new_content.
    await sent(alice, room, {
        "body": "* x", "m.new_content": {"body": "x"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }, "org.example.other")
    valid = await edit(alice, room, original, "alice's better words")
    await sent(alice, room, {"msgtype": "m.text", "body": "* no new content",
                             "m.relates_to": {"rel_type": "m.replace", "event_id": original}})
    assert bundled(await get_event(bob, room, original))["m.replace"]["event_id"] == valid

    # An edit of an edit is not an edit.
    await edit(alice, room, valid, "editing the edit")
    assert "m.replace" not in bundled(await get_event(alice, room, valid))
    # The relations API still lists every child.
    r = await relations(alice, room, original, "m.replace")
    assert len(r["chunk"]) == 4


async def test_state_events_are_not_edited(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    topic = await send_state(alice, room, "m.room.topic", {"topic": "old"})
    await sent(alice, room, {
        "topic": "new", "m.new_content": {"topic": "new"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": topic},
    }, "m.room.topic")
    assert "m.relations" not in (await get_event(alice, room, topic))["unsigned"]


async def test_redacted_edit_is_no_longer_bundled(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    original = await alice.send_text(room, "v1")
    first = await edit(alice, room, original, "v2")
    assert bundled(await get_event(alice, room, original))["m.replace"]["event_id"] == first
    second = await edit(alice, room, original, "v3")
    newest = (await _edit_ids_by_recency(alice, room, [first, second]))[0]
    other = first if newest == second else second

    r = await alice.put(f"{V3}/rooms/{room}/redact/{newest}/r1", {})
    assert r.status == 200, r
    # Spec: redacting the latest edit reverts to the one before it.
    assert bundled(await get_event(alice, room, original))["m.replace"]["event_id"] == other
    r = await alice.put(f"{V3}/rooms/{room}/redact/{other}/r2", {})
    assert r.status == 200, r
    assert "m.relations" not in (await get_event(alice, room, original))["unsigned"]
    assert (await relations(alice, room, original))["chunk"] == []


async def test_redacted_original_has_no_edit_but_keeps_its_thread(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    original = await alice.send_text(room, "to be removed")
    await edit(alice, room, original, "edited")
    reply = await thread_reply(alice, room, original, "in thread")
    r = await alice.put(f"{V3}/rooms/{room}/redact/{original}/r1", {})
    assert r.status == 200, r
    event = await get_event(alice, room, original)
    assert event["content"] == {}
    relations_ = bundled(event)
    # Spec: the m.replace aggregation is not bundled with a redacted original (only m.replace).
    assert "m.replace" not in relations_
    assert relations_["m.thread"]["latest_event"]["event_id"] == reply


async def test_references_bundled_reactions_not(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    target = await alice.send_text(room, "poll-like")
    refs = [await reference(bob, room, target, "one"), await reference(alice, room, target, "two")]
    assert (await react(bob, room, target, "👍")).status == 200
    relations_ = bundled(await get_event(alice, room, target))
    assert relations_["m.reference"] == {"chunk": [{"event_id": refs[0]}, {"event_id": refs[1]}]}
    # Spec (v1.7): annotations are not aggregated by the server.
    assert set(relations_) == {"m.reference"}
    # Unknown relation types are stored and listed but not aggregated.
    custom = await sent(alice, room, {"body": "x", "m.relates_to": {"rel_type": "org.example.x", "event_id": target}})
    assert set(bundled(await get_event(alice, room, target))) == {"m.reference"}
    assert [e["event_id"] for e in (await relations(alice, room, target, "org.example.x"))["chunk"]] == [custom]


async def test_limited_sync_timeline_bundles(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    original = await alice.send_text(room, "original")
    fixed = await edit(alice, room, original, "fixed")
    reply = await thread_reply(alice, room, original, "reply")
    for i in range(3):
        await alice.send_text(room, f"filler {i}")
    # A limited timeline starting at the original: the client cannot aggregate what it did not get.
    filter_ = '{"room": {"timeline": {"limit": 6}}}'
    sync = await alice.sync(filter=filter_)
    room_section = sync["rooms"]["join"][room]
    assert room_section["timeline"]["limited"] is True
    served = {e["event_id"]: e for e in timeline(sync, room)}
    assert served[original]["unsigned"]["m.relations"]["m.replace"]["event_id"] == fixed
    assert served[original]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] == reply


async def test_non_member_and_unknown_event_still_checked(api):
    alice = await api.register("alice")
    eve = await api.register("eve")
    room = await alice.create_room()
    original = await alice.send_text(room, "private")
    await edit(alice, room, original, "still private")
    # Aggregations do not open a way around the room's access checks.
    r = await eve.get(f"{V3}/rooms/{room}/event/{original}")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await send(eve, room, {"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": original}})
    assert r.status == 403, r
    assert (await relations(alice, room, original, "m.thread"))["chunk"] == []
