"""GET /rooms/{roomId}/context/{eventId}.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3roomsroomidcontexteventid
"""

from __future__ import annotations

import json

from tests.client.sync_helpers import V3, bodies, ids, leave, messages, send_event, send_state
from tests.helpers import User


async def context(user: User, room_id: str, event_id: str, filter: dict | None = None, **params: object):
    query = {k: str(v) for k, v in params.items()}
    if filter is not None:
        query["filter"] = json.dumps(filter)
    return await user.get(f"{V3}/rooms/{room_id}/context/{event_id}", params=query)


async def test_events_before_and_after(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    sent = [await alice.send_text(room, f"m{i}") for i in range(10)]
    r = await context(alice, room, sent[4], limit=4)
    assert r.status == 200, r
    assert r["event"]["event_id"] == sent[4]
    assert r["event"]["content"]["body"] == "m4"
    assert r["event"]["room_id"] == room
    # events_before in reverse-chronological order, events_after chronological.
    assert ids(r["events_before"]) == [sent[3], sent[2]]
    assert ids(r["events_after"]) == [sent[5], sent[6]]
    # start and end continue with /messages without gap or overlap.
    back = await messages(alice, room, dir="b", **{"from": r["start"]}, limit=2)
    assert ids(back["chunk"]) == [sent[1], sent[0]]
    forward = await messages(alice, room, dir="f", **{"from": r["end"]}, limit=10)
    assert ids(forward["chunk"]) == sent[7:]


async def test_default_limit_and_edges_of_the_room(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    sent = [await alice.send_text(room, f"m{i}") for i in range(12)]
    r = await context(alice, room, sent[6])
    # The default limit is 10 events around the one asked for.
    assert len(r["events_before"]) + len(r["events_after"]) == 10
    assert ids(r["events_after"]) == sent[7:12]
    # Around the newest event there is nothing after; `end` still works for later events.
    r = await context(alice, room, sent[-1], limit=4)
    assert r["events_after"] == []
    later = await alice.send_text(room, "later")
    forward = await messages(alice, room, dir="f", **{"from": r["end"]})
    assert ids(forward["chunk"]) == [later]
    # Around the create event there is nothing before.
    create = (await messages(alice, room, dir="f", limit=1))["chunk"][0]
    assert create["type"] == "m.room.create"
    r = await context(alice, room, create["event_id"], limit=4)
    assert r["events_before"] == []
    back = await messages(alice, room, dir="b", **{"from": r["start"]})
    assert back["chunk"] == []
    # limit=0: only the event itself.
    r = await context(alice, room, sent[3], limit=0)
    assert r["events_before"] == [] and r["events_after"] == []
    assert r["event"]["event_id"] == sent[3]


async def test_state_is_the_state_at_the_last_event_returned(api):
    alice = await api.register("alice")
    room = await alice.create_room(name="Before")
    target = await alice.send_text(room, "target")
    renamed = await send_state(alice, room, "m.room.name", {"name": "After"})
    await alice.send_text(room, "after the rename")
    r = await context(alice, room, target, limit=10)
    assert renamed in ids(r["events_after"])
    names = [e for e in r["state"] if e["type"] == "m.room.name"]
    assert [e["content"]["name"] for e in names] == ["After"]
    keys = {(e["type"], e["state_key"]) for e in r["state"]}
    assert {("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", alice.user_id)} <= keys
    # With nothing after the event, the state is the state at the event itself.
    r = await context(alice, room, target, limit=0)
    assert [e["content"]["name"] for e in r["state"] if e["type"] == "m.room.name"] == ["Before"]


async def test_filter_applies_to_the_surrounding_events(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await carol.join(room)
    a1 = await alice.send_text(room, "a1")
    await send_event(alice, room, "com.example.noise", {}, "n1")
    b1 = await bob.send_text(room, "b1")
    await send_event(alice, room, "com.example.noise", {}, "n2")
    a2 = await alice.send_text(room, "a2")
    r = await context(alice, room, b1, {"types": ["m.room.message"]}, limit=2)
    assert ids(r["events_before"]) == [a1]
    assert ids(r["events_after"]) == [a2]
    r = await context(alice, room, b1, {"types": ["m.room.message"], "lazy_load_members": True}, limit=2)
    members = {e["state_key"] for e in r["state"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}
    assert carol.user_id not in members


async def test_unknown_or_foreign_events_are_not_found(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    other = await alice.create_room()
    foreign = await alice.send_text(other, "elsewhere")
    r = await context(alice, room, "$doesnotexist")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await context(alice, room, foreign)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_access(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    seen = await alice.send_text(room, "bob sees this")
    r = await context(eve, room, seen)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    await leave(bob, room)
    unseen = await alice.send_text(room, "bob is gone")
    r = await context(bob, room, seen, limit=10)
    assert r.status == 200
    # Nothing after bob's leave comes back, neither asked for nor around.
    assert unseen not in ids(r["events_after"])
    assert "bob is gone" not in bodies(r["events_after"])
    r = await context(bob, room, unseen)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_bad_parameters(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    event = await alice.send_text(room, "x")
    for limit in ["many", "-1"]:
        r = await context(alice, room, event, limit=limit)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (limit, r)
    r = await alice.get(f"{V3}/rooms/{room}/context/{event}", params={"filter": "{nope"})
    assert r.status == 400
    r = await alice.get(f"{V3}/rooms/not-a-room/context/{event}")
    assert r.status == 400
