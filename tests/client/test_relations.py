"""GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] and sending relations.

Spec: https://spec.matrix.org/v1.19/client-server-api/#relationships-api
"""

from __future__ import annotations

from tests.client.relation_helpers import (
    V3, edit, get_event, ids, react, reference, relations, send, sent, thread_reply,
)
from tests.client.sync_helpers import leave, messages, send_state


async def test_children_newest_first_and_filtered_by_type(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    root = await alice.send_text(room, "root")
    unrelated = await alice.send_text(room, "unrelated")
    changed = await edit(alice, room, root, "root, edited")
    in_thread = await thread_reply(alice, room, root, "first reply")
    liked = (await react(alice, room, root, "👍"))["event_id"]
    cited = await reference(alice, room, root)

    r = await relations(alice, room, root)
    assert r.status == 200, r
    assert ids(r["chunk"]) == [cited, liked, in_thread, changed]
    assert unrelated not in ids(r["chunk"])
    assert all(e["room_id"] == room for e in r["chunk"])
    assert "next_batch" not in r.body and "prev_batch" not in r.body and "recursion_depth" not in r.body

    r = await relations(alice, room, root, "m.annotation")
    assert ids(r["chunk"]) == [liked]
    assert r["chunk"][0]["content"]["m.relates_to"]["key"] == "👍"
    r = await relations(alice, room, root, "m.thread", "m.room.message")
    assert ids(r["chunk"]) == [in_thread]
    r = await relations(alice, room, root, "m.annotation", "m.room.message")
    assert r.status == 200 and r["chunk"] == []
    r = await relations(alice, room, root, "org.example.unknown")
    assert r.status == 200 and r["chunk"] == []
    # An event nobody relates to has an empty chunk.
    r = await relations(alice, room, unrelated)
    assert r.status == 200 and r["chunk"] == []


async def test_pagination_backwards_forwards_and_to(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    root = await alice.send_text(room, "root")
    replies = [await thread_reply(alice, room, root, f"r{i}") for i in range(7)]

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": 3, **({"from": token} if token else {})}
        r = await relations(alice, room, root, **params)
        assert r.status == 200, r
        assert len(r["chunk"]) <= 3
        if token is not None:
            assert r["prev_batch"] == token
        seen += ids(r["chunk"])
        pages += 1
        token = r.body.get("next_batch")
        if token is None:
            break
    assert pages == 3
    assert seen == list(reversed(replies))

    # dir=f reads chronologically, and its tokens continue forwards.
    r = await relations(alice, room, root, dir="f", limit=4)
    assert ids(r["chunk"]) == replies[:4]
    r = await relations(alice, room, root, dir="f", limit=4, **{"from": r["next_batch"]})
    assert ids(r["chunk"]) == replies[4:]
    assert "next_batch" not in r.body

    # `to` stops a backwards page at a token from an earlier page.
    first = await relations(alice, room, root, limit=2)
    second = await relations(alice, room, root, limit=2, **{"from": first["next_batch"]})
    r = await relations(alice, room, root, limit=10, **{"from": first["next_batch"], "to": second["next_batch"]})
    assert ids(r["chunk"]) == ids(second["chunk"])
    # A /messages token works as `from` too (spec).
    now = (await messages(alice, room, dir="b", limit=1))["start"]
    r = await relations(alice, room, root, limit=1, **{"from": now})
    assert ids(r["chunk"]) == [replies[-1]]
    later = await thread_reply(alice, room, root, "later")
    r = await relations(alice, room, root, dir="f", **{"from": now})
    assert ids(r["chunk"]) == [later]


async def test_recurse_follows_children_of_children(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    root = await alice.send_text(room, "root")
    reply = await thread_reply(alice, room, root, "reply")
    reply_edit = await edit(alice, room, reply, "reply, edited")
    liked_edit = (await react(alice, room, reply_edit, "👍"))["event_id"]

    r = await relations(alice, room, root)
    assert ids(r["chunk"]) == [reply]
    r = await relations(alice, room, root, recurse=True)
    assert r.status == 200, r
    assert ids(r["chunk"]) == [liked_edit, reply_edit, reply]
    assert r["recursion_depth"] >= 3
    r = await relations(alice, room, root, recurse=False)
    assert ids(r["chunk"]) == [reply]
    assert "recursion_depth" in r.body
    # Filters apply at every level: the edit is reached only through an m.thread event.
    r = await relations(alice, room, root, "m.replace", recurse=True)
    assert r["chunk"] == []
    r = await relations(alice, room, reply, "m.replace", recurse=True)
    assert ids(r["chunk"]) == [reply_edit]


async def test_bad_requests(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    root = await alice.send_text(room, "root")
    await thread_reply(alice, room, root, "reply")
    for params, errcode in [
        ({"dir": "x"}, "M_INVALID_PARAM"),
        ({"limit": "ten"}, "M_INVALID_PARAM"),
        ({"limit": "-1"}, "M_INVALID_PARAM"),
        ({"from": "nonsense"}, "M_INVALID_PARAM"),
        ({"to": "s1_x"}, "M_INVALID_PARAM"),
        ({"recurse": "maybe"}, "M_INVALID_PARAM"),
    ]:
        r = await relations(alice, room, root, **params)
        assert r.status == 400, (params, r)
        assert r.errcode == errcode, (params, r)
        assert isinstance(r["error"], str)
    r = await relations(alice, room, root, limit=1)
    assert len(r["chunk"]) == 1
    r = await alice.api.request("GET", f"/_matrix/client/v1/rooms/{room}/relations/{root}")
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"
    r = await relations(alice, "not-a-room", root)
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_unknown_events_and_non_members(api):
    alice = await api.register("alice")
    eve = await api.register("eve")
    room = await alice.create_room()
    other_room = await alice.create_room()
    root = await alice.send_text(room, "root")
    elsewhere = await alice.send_text(other_room, "elsewhere")
    await thread_reply(alice, room, root, "reply")

    r = await relations(alice, room, "$unknown:test.local")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    # An event of another room is not found in this one.
    r = await relations(alice, room, elsewhere)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    # Someone outside the room learns nothing, whether or not the room exists.
    r = await relations(eve, room, root)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await relations(eve, "!nowhere:test.local", root)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_history_visibility(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await send_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    before = await alice.send_text(room, "before bob")
    await thread_reply(alice, room, before, "also before bob")
    await bob.join(room)
    # Bob may not read an event from before he joined, nor its children.
    r = await relations(bob, room, before)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    root = await alice.send_text(room, "after bob joined")
    seen = await thread_reply(alice, room, root, "seen by bob")
    await leave(bob, room)
    await thread_reply(alice, room, root, "after bob left")
    # A former member reads the children up to the point they left.
    r = await relations(bob, room, root)
    assert r.status == 200, r
    assert ids(r["chunk"]) == [seen]


async def test_duplicate_reaction_is_refused(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    target = await alice.send_text(room, "react to me")
    first = await react(bob, room, target, "👍")
    assert first.status == 200, first

    again = await react(bob, room, target, "👍")
    assert again.status == 400 and again.errcode == "M_DUPLICATE_ANNOTATION", again
    r = await relations(alice, room, target, "m.annotation")
    assert ids(r["chunk"]) == [first["event_id"]]

    # Another key, or another user with the same key, is a different reaction.
    assert (await react(bob, room, target, "🎉")).status == 200
    assert (await react(alice, room, target, "👍")).status == 200
    # A retried send with the same transaction id gets the same event back, not an error.
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "❤️"}}
    path = f"{V3}/rooms/{room}/send/m.reaction/retry-txn"
    r1 = await bob.put(path, content)
    r2 = await bob.put(path, content)
    assert r1.status == 200 and r2.status == 200 and r1["event_id"] == r2["event_id"]

    # Once the reaction is redacted it may be sent again.
    r = await bob.put(f"{V3}/rooms/{room}/redact/{first['event_id']}/undo-like", {})
    assert r.status == 200, r
    r = await relations(alice, room, target, "m.annotation")
    assert first["event_id"] not in ids(r["chunk"])
    again = await react(bob, room, target, "👍")
    assert again.status == 200, again


async def test_invalid_relations_are_refused(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    other_room = await alice.create_room()
    target = await alice.send_text(room, "target")
    elsewhere = await alice.send_text(other_room, "elsewhere")

    # A reaction needs a key.
    r = await send(alice, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": target}}, "m.reaction")
    assert r.status == 400 and r.errcode == "M_UNKNOWN", r
    r = await react(alice, room, target, "x" * 501)
    assert r.status == 400, r
    # Parent and child must share a room, and the parent must be known.
    r = await send(alice, room, {"body": "x", "m.relates_to": {"rel_type": "m.reference", "event_id": elsewhere}})
    assert r.status == 400 and r.errcode == "M_UNKNOWN", r
    r = await send(alice, room, {"body": "x", "m.relates_to": {"rel_type": "m.reference", "event_id": "$nope:x"}})
    assert r.status == 400 and r.errcode == "M_UNKNOWN", r
    # Nothing was stored.
    r = await relations(alice, room, target)
    assert r["chunk"] == []
    r = await relations(alice, other_room, elsewhere)
    assert r["chunk"] == []


async def test_malformed_relates_to_is_not_a_relation(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    target = await alice.send_text(room, "target")
    # Spec: relationships that do not match the schema are ignored; the events are still sent.
    for relates_to in (
        {"rel_type": "m.reference"},
        {"event_id": target},
        {"rel_type": 5, "event_id": target},
        "m.reference",
        {"m.in_reply_to": {"event_id": target}},  # a rich reply has no rel_type
    ):
        await sent(alice, room, {"msgtype": "m.text", "body": "x", "m.relates_to": relates_to})
    r = await relations(alice, room, target)
    assert r.status == 200 and r["chunk"] == []
    assert "m.relations" not in (await get_event(alice, room, target))["unsigned"]
