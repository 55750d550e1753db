"""Threads: GET /rooms/{roomId}/threads, the m.thread summary, and thread validation.

Spec: https://spec.matrix.org/v1.19/client-server-api/#threading
"""

from __future__ import annotations

from tests.client.relation_helpers import (
    V3, bundled, edit, get_event, ids, react, relations, send, thread_reply, threads,
)
from tests.client.sync_helpers import send_state


async def _room_of_three(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await carol.join(room)
    return alice, bob, carol, room


async def test_thread_summary_counts_and_participation(api):
    alice, bob, carol, room = await _room_of_three(api)
    root = await alice.send_text(room, "root by alice")
    await thread_reply(bob, room, root, "bob 1")
    await thread_reply(bob, room, root, "bob 2")
    last = await thread_reply(bob, room, root, "bob 3")
    # Reactions to the root are not part of the thread.
    await react(carol, room, root, "👀")

    summary = bundled(await get_event(bob, room, root))["m.thread"]
    assert summary["count"] == 3
    assert summary["current_user_participated"] is True
    assert summary["latest_event"]["event_id"] == last
    assert summary["latest_event"]["content"]["body"] == "bob 3"
    assert summary["latest_event"]["sender"] == bob.user_id
    # The root's sender took part, a mere reader did not.
    assert bundled(await get_event(alice, room, root))["m.thread"]["current_user_participated"] is True
    assert bundled(await get_event(carol, room, root))["m.thread"]["current_user_participated"] is False
    # The thread's events themselves carry no thread summary.
    assert "m.thread" not in bundled(await get_event(bob, room, last))


async def test_latest_event_carries_its_own_aggregations(api):
    alice, bob, _, room = await _room_of_three(api)
    root = await alice.send_text(room, "root")
    reply = await thread_reply(bob, room, root, "typo")
    fixed = await edit(bob, room, reply, "fixed")
    latest = bundled(await get_event(alice, room, root))["m.thread"]["latest_event"]
    # The edit is a relation of the reply, not of the thread: the reply stays the latest event.
    assert latest["event_id"] == reply
    assert latest["unsigned"]["m.relations"]["m.replace"]["event_id"] == fixed


async def test_redacted_thread_reply_leaves_the_summary(api):
    alice, bob, _, room = await _room_of_three(api)
    root = await alice.send_text(room, "root")
    first = await thread_reply(bob, room, root, "one")
    second = await thread_reply(bob, room, root, "two")
    r = await bob.put(f"{V3}/rooms/{room}/redact/{second}/oops", {"reason": "oops"})
    assert r.status == 200, r
    summary = bundled(await get_event(alice, room, root))["m.thread"]
    assert summary["count"] == 1
    assert summary["latest_event"]["event_id"] == first
    r = await relations(alice, room, root, "m.thread")
    assert ids(r["chunk"]) == [first]
    # With its only reply gone, bob no longer took part; the root is no longer a thread.
    await bob.put(f"{V3}/rooms/{room}/redact/{first}/oops2", {})
    assert "m.thread" not in bundled(await get_event(alice, room, root))
    assert (await threads(alice, room))["chunk"] == []


async def test_threads_list_latest_activity_first_and_participated(api):
    alice, bob, carol, room = await _room_of_three(api)
    by_alice = await alice.send_text(room, "alice's thread")
    by_bob = await bob.send_text(room, "bob's thread")
    by_carol = await carol.send_text(room, "carol's thread")
    await alice.send_text(room, "not a thread")
    await thread_reply(carol, room, by_alice, "carol in alice's thread")
    await thread_reply(carol, room, by_bob, "carol in bob's thread")
    await thread_reply(bob, room, by_carol, "bob in carol's thread")
    # New activity moves alice's thread to the top.
    await thread_reply(bob, room, by_alice, "bob in alice's thread")

    r = await threads(alice, room)
    assert r.status == 200, r
    assert ids(r["chunk"]) == [by_alice, by_carol, by_bob]
    assert "next_batch" not in r.body
    # Roots come with their thread summary.
    summary = bundled(r["chunk"][0])["m.thread"]
    assert summary["count"] == 2 and summary["latest_event"]["content"]["body"] == "bob in alice's thread"

    r = await threads(alice, room, include="participated")
    assert ids(r["chunk"]) == [by_alice]  # alice started it
    r = await threads(bob, room, include="participated")
    assert ids(r["chunk"]) == [by_alice, by_carol, by_bob]
    r = await threads(carol, room, include="all")
    assert ids(r["chunk"]) == [by_alice, by_carol, by_bob]


async def test_threads_pagination(api):
    alice, bob, _, room = await _room_of_three(api)
    roots = [await alice.send_text(room, f"root {i}") for i in range(5)]
    for root in roots:
        await thread_reply(bob, room, root, "reply")
    seen: list[str] = []
    token = None
    while True:
        r = await threads(alice, room, limit=2, **({"from": token} if token else {}))
        assert r.status == 200, r
        assert len(r["chunk"]) <= 2
        seen += ids(r["chunk"])
        token = r.body.get("next_batch")
        if token is None:
            break
    assert seen == list(reversed(roots))


async def test_threads_bad_requests_and_non_members(api):
    alice = await api.register("alice")
    eve = await api.register("eve")
    room = await alice.create_room()
    for params in ({"include": "mine"}, {"limit": "0"}, {"limit": "x"}, {"from": "yesterday"}):
        r = await threads(alice, room, **params)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (params, r)
    r = await threads(eve, room)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await threads(eve, "!nowhere:test.local")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await alice.api.request("GET", f"/_matrix/client/v1/rooms/{room}/threads")
    assert r.status == 401


async def test_threads_follow_history_visibility(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await send_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    hidden = await alice.send_text(room, "before bob")
    await thread_reply(alice, room, hidden, "reply before bob")
    await bob.join(room)
    shown = await alice.send_text(room, "after bob")
    await thread_reply(alice, room, shown, "reply after bob")
    assert ids((await threads(alice, room))["chunk"]) == [shown, hidden]
    assert ids((await threads(bob, room))["chunk"]) == [shown]


async def test_no_thread_from_an_event_with_a_relation(api):
    alice, bob, _, room = await _room_of_three(api)
    root = await alice.send_text(room, "root")
    reply = await thread_reply(bob, room, root, "reply")
    liked = (await react(alice, room, root, "👍"))["event_id"]
    for parent in (reply, liked):
        r = await send(bob, room, {
            "msgtype": "m.text", "body": "nested",
            "m.relates_to": {"rel_type": "m.thread", "event_id": parent},
        })
        # Spec, "Validation of m.thread relationships": 400 with M_UNKNOWN.
        assert r.status == 400 and r.errcode == "M_UNKNOWN", r
        assert (await relations(alice, room, parent, "m.thread"))["chunk"] == []
    # A reply (no rel_type) may still start a thread.
    rich_reply = (await send(bob, room, {
        "msgtype": "m.text", "body": "a reply", "m.relates_to": {"m.in_reply_to": {"event_id": root}},
    }))["event_id"]
    assert (await send(alice, room, {
        "msgtype": "m.text", "body": "thread off a reply",
        "m.relates_to": {"rel_type": "m.thread", "event_id": rich_reply},
    })).status == 200


async def test_former_member_sees_the_thread_as_it_was_when_they_left(api):
    alice, bob, _, room = await _room_of_three(api)
    root = await alice.send_text(room, "root")
    before = await thread_reply(alice, room, root, "before bob left")
    r = await bob.post(f"{V3}/rooms/{room}/leave", {})
    assert r.status == 200, r
    await thread_reply(alice, room, root, "after bob left")
    await thread_reply(alice, room, root, "also after")
    await edit(alice, room, root, "root, edited after bob left")

    summary = bundled(await get_event(bob, room, root))["m.thread"]
    assert summary["count"] == 1
    assert summary["latest_event"]["event_id"] == before
    assert "m.replace" not in bundled(await get_event(bob, room, root))
    r = await threads(bob, room)
    assert ids(r["chunk"]) == [root]
    assert bundled(r["chunk"][0])["m.thread"]["count"] == 1
    # Those still in the room see all of it.
    assert bundled(await get_event(alice, room, root))["m.thread"]["count"] == 3
