"""History visibility: what a user may see of the events sent before, while and after they were in a room.

Spec: https://spec.matrix.org/v1.19/client-server-api/#history-visibility
"""

from __future__ import annotations

import json

from tests.client.sync_helpers import V3, bodies, leave, messages, send_state, timeline
from tests.helpers import User

EXPECTED_WHILE_JOINED = {
    "joined": ["m2"],
    "invited": ["m1", "m2"],
    "shared": ["m0", "m1", "m2"],
    "world_readable": ["m0", "m1", "m2"],
}
# Which of bob's own membership events bob sees: an invite only where invited users may see.
EXPECTED_OWN_MEMBERSHIPS = {
    "joined": ["join"],
    "invited": ["invite", "join"],
    "shared": ["invite", "join"],
    "world_readable": ["invite", "join"],
}
BIG_TIMELINE = json.dumps({"room": {"timeline": {"limit": 100}}})


async def room_with_history(alice: User, bob: User, visibility: str) -> tuple[str, dict[str, str]]:
    """m0 before bob is invited, m1 while invited, m2 after bob joined."""
    room = await alice.create_room(initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": visibility}},
    ])
    sent = {"m0": await alice.send_text(room, "m0")}
    await alice.invite(room, bob.user_id)
    sent["m1"] = await alice.send_text(room, "m1")
    await bob.join(room)
    sent["m2"] = await alice.send_text(room, "m2")
    return room, sent


def own_memberships(events: list[dict], user: User) -> list[str]:
    return [e["content"]["membership"] for e in events
            if e["type"] == "m.room.member" and e["state_key"] == user.user_id]


async def test_a_user_who_joins_later_sees_what_the_visibility_allows(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    for visibility, expected in EXPECTED_WHILE_JOINED.items():
        room, sent = await room_with_history(alice, bob, visibility)
        r = await messages(bob, room, dir="f", limit=100)
        assert r.status == 200, r
        assert bodies(r["chunk"]) == expected, visibility
        assert own_memberships(r["chunk"], bob) == EXPECTED_OWN_MEMBERSHIPS[visibility], visibility
        r = await messages(bob, room, dir="b", limit=100)
        assert bodies(r["chunk"]) == list(reversed(expected)), visibility
        # The same in /sync...
        sync = await bob.sync(filter=BIG_TIMELINE)
        assert bodies(timeline(sync, room)) == expected, visibility
        # ...in /context and in GET /event.
        for name, event_id in sent.items():
            ctx = await bob.get(f"{V3}/rooms/{room}/context/{event_id}")
            event = await bob.get(f"{V3}/rooms/{room}/event/{event_id}")
            if name in expected:
                assert ctx.status == 200 and event.status == 200, (visibility, name)
                around = ctx["events_before"] + ctx["events_after"]
                assert set(bodies(around)) <= set(expected), (visibility, name)
            else:
                assert ctx.status == 404 and ctx.errcode == "M_NOT_FOUND", (visibility, name, ctx)
                assert event.status == 404 and event.errcode == "M_NOT_FOUND", (visibility, name, event)
        # The room's own members always see everything.
        assert bodies((await messages(alice, room, dir="f", limit=100))["chunk"]) == ["m0", "m1", "m2"]


async def test_events_after_leaving_are_not_visible(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    for visibility, expected in EXPECTED_WHILE_JOINED.items():
        room, sent = await room_with_history(alice, bob, visibility)
        first = await bob.sync()
        await leave(bob, room)
        m3 = await alice.send_text(room, "m3")
        r = await messages(bob, room, dir="f", limit=100)
        assert r.status == 200
        seen = bodies(r["chunk"])
        assert "m3" not in seen, visibility
        assert "m2" in seen, visibility
        if visibility != "shared":
            assert seen == expected, visibility
        assert own_memberships(r["chunk"], bob)[-1] == "leave"
        ctx = await bob.get(f"{V3}/rooms/{room}/context/{m3}")
        assert ctx.status == 404, visibility
        # The leave in /sync shows the room up to the leave, never m3.
        sync = await bob.sync(since=first["next_batch"])
        left = timeline(sync, room, "leave")
        assert "m3" not in bodies(left) and own_memberships(left, bob)[-1] == "leave"
        # And a world_readable room stays readable only up to the leave for a departed member.
        again = await bob.sync(filter=json.dumps({"room": {"include_leave": True, "timeline": {"limit": 100}}}))
        assert "m3" not in bodies(timeline(again, room, "leave"))


async def test_visibility_at_each_event_counts_not_the_current_one(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    # shared, then joined: bob, joining later, sees the shared past but not the joined-only part.
    room = await alice.create_room(preset="public_chat")
    await alice.send_text(room, "shared time")
    to_joined = await send_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    await alice.send_text(room, "members only")
    await bob.join(room)
    await alice.send_text(room, "welcome bob")
    r = await messages(bob, room, dir="f", limit=100)
    assert bodies(r["chunk"]) == ["shared time", "welcome bob"]
    # The visibility change is visible since the visibility before it allowed it.
    assert to_joined in [e["event_id"] for e in r["chunk"]]

    # joined, then world_readable: the change itself is visible because the new value allows it.
    room = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}},
    ])
    await alice.send_text(room, "secret")
    to_world = await send_state(alice, room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    await alice.send_text(room, "public")
    await carol.join(room)
    r = await messages(carol, room, dir="f", limit=100)
    assert bodies(r["chunk"]) == ["public"]
    assert to_world in [e["event_id"] for e in r["chunk"]]


async def test_unknown_visibility_is_treated_as_shared(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "mystery"}},
    ])
    await alice.send_text(room, "before bob")
    await bob.join(room)
    r = await messages(bob, room, dir="f", limit=100)
    assert bodies(r["chunk"]) == ["before bob"]


async def test_no_visibility_event_means_shared(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}},
    ])
    # A visibility event with no usable value counts as shared too.
    await send_state(alice, room, "m.room.history_visibility", {})
    await alice.send_text(room, "before bob")
    await bob.join(room)
    r = await messages(bob, room, dir="f", limit=100)
    assert bodies(r["chunk"]) == ["before bob"]


async def test_a_rejected_invite_shows_its_leave_event_whatever_the_visibility(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}},
    ])
    await alice.send_text(room, "never for bob")
    await alice.invite(room, bob.user_id)
    first = await bob.sync()
    assert room in first["rooms"]["invite"]
    await leave(bob, room)  # rejecting the invite
    r = await bob.sync(since=first["next_batch"])
    events = timeline(r, room, "leave")
    assert own_memberships(events, bob) == ["leave"]
    assert bodies(events) == []
