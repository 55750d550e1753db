"""Ignoring users: m.ignored_user_list hides the ignored users' events and invites.

Spec: https://spec.matrix.org/v1.19/client-server-api/#ignoring-users
"""

from __future__ import annotations

import asyncio

from tests.client.sync_helpers import bodies, messages, send_state, timeline, until_waiting

V3 = "/_matrix/client/v3"


def ignore_path(user) -> str:
    return f"{V3}/user/{user.user_id}/account_data/m.ignored_user_list"


async def ignore(user, *targets: str) -> None:
    r = await user.put(ignore_path(user), {"ignored_users": {t: {} for t in targets}})
    assert r.status == 200, r


async def family(api):
    """alice's public room with bob and eve in it; bob is the one who ignores, eve may set state."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    room = await alice.create_room(
        preset="public_chat", power_level_content_override={"users": {eve.user_id: 50}})
    await bob.join(room)
    await eve.join(room)
    return alice, bob, eve, room


async def test_the_list_is_checked_when_written(api):
    bob = await api.register("bob")
    cases = [
        ({}, "M_BAD_JSON"),
        ({"ignored_users": ["@eve:test.local"]}, "M_BAD_JSON"),
        ({"ignored_users": {"eve": {}}}, "M_INVALID_PARAM"),
        ({"ignored_users": {"@eve:test.local": True}}, "M_BAD_JSON"),
        ({"ignored_users": {bob.user_id: {}}}, "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        r = await bob.put(ignore_path(bob), body)
        assert r.status == 400 and r.errcode == errcode, (body, r)
    assert (await bob.get(ignore_path(bob))).status == 404
    assert await api.services.db.fetchval("SELECT count(*) FROM account_data") == 0
    # Users of other servers may be ignored too.
    body = {"ignored_users": {"@eve:test.local": {}, "@spam:elsewhere.example": {}}}
    r = await bob.put(ignore_path(bob), body)
    assert r.status == 200, r
    assert (await bob.get(ignore_path(bob))).body == body
    # An empty list unignores everyone.
    r = await bob.put(ignore_path(bob), {"ignored_users": {}})
    assert r.status == 200


async def test_sync_leaves_out_their_messages_but_not_their_state(api):
    alice, bob, eve, room = await family(api)
    first = await bob.sync()
    await ignore(bob, eve.user_id)
    await eve.send_text(room, "from eve")
    topic_id = await send_state(eve, room, "m.room.topic", {"topic": "eve's topic"})
    await alice.send_text(room, "from alice")

    later = await bob.sync(since=first["next_batch"])
    events = timeline(later, room)
    assert bodies(events) == ["from alice"]
    assert topic_id in [e["event_id"] for e in events]  # state events are still sent
    # The ignore list itself reaches the client.
    assert {"type": "m.ignored_user_list", "content": {"ignored_users": {eve.user_id: {}}}} in (
        later["account_data"]["events"])
    initial = await bob.sync()
    assert bodies(timeline(initial, room)) == ["from alice"]
    # Others still see eve.
    assert bodies(timeline(await alice.sync(), room)) == ["from eve", "from alice"]


async def test_their_messages_do_not_end_a_long_poll(api):
    alice, bob, eve, room = await family(api)
    await ignore(bob, eve.user_id)
    first = await bob.sync()
    waiting = asyncio.create_task(bob.sync(since=first["next_batch"], timeout=30_000))
    await until_waiting(api.services)
    await eve.send_text(room, "ignored")
    await alice.send_text(room, "wanted")
    result = await waiting
    assert bodies(timeline(result, room)) == ["wanted"]


async def test_limited_timeline_counts_only_what_is_shown(api):
    alice, bob, eve, room = await family(api)
    await ignore(bob, eve.user_id)
    first = await bob.sync()
    for i in range(5):
        await eve.send_text(room, f"eve {i}")
    await alice.send_text(room, "alice")
    later = await bob.sync(since=first["next_batch"], filter='{"room":{"timeline":{"limit":2}}}')
    section = later["rooms"]["join"][room]["timeline"]
    # Eve's five messages are not what fills the limit.
    assert bodies(section["events"]) == ["alice"] and section["limited"] is False


async def test_messages_context_and_event(api):
    alice, bob, eve, room = await family(api)
    await alice.send_text(room, "a1")
    eve_msg = await eve.send_text(room, "e1")
    topic_id = await send_state(eve, room, "m.room.topic", {"topic": "t"})
    a2 = await alice.send_text(room, "a2")
    await ignore(bob, eve.user_id)

    r = await messages(bob, room, dir="b", limit=50)
    assert r.status == 200
    assert bodies(r["chunk"]) == ["a2", "a1"]
    assert topic_id in [e["event_id"] for e in r["chunk"]]

    r = await bob.get(f"{V3}/rooms/{room}/context/{a2}", params={"limit": "10"})
    assert r.status == 200, r
    assert bodies(r["events_before"]) == ["a1"]
    assert topic_id in [e["event_id"] for e in r["events_before"]]
    r = await bob.get(f"{V3}/rooms/{room}/context/{eve_msg}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"

    r = await bob.get(f"{V3}/rooms/{room}/event/{eve_msg}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await bob.get(f"{V3}/rooms/{room}/event/{topic_id}")
    assert r.status == 200
    # alice ignores no one.
    assert (await alice.get(f"{V3}/rooms/{room}/event/{eve_msg}")).status == 200


async def test_invites_from_ignored_users_are_hidden(api):
    bob = await api.register("bob")
    eve = await api.register("eve")
    await ignore(bob, eve.user_id)
    first = await bob.sync()
    room = await eve.create_room()
    await eve.invite(room, bob.user_id)
    later = await bob.sync(since=first["next_batch"])
    assert room not in later["rooms"]["invite"]
    assert room not in (await bob.sync())["rooms"]["invite"]

    # Unignoring shows the invite at once, in the next incremental sync.
    r = await bob.put(ignore_path(bob), {"ignored_users": {}})
    assert r.status == 200
    again = await bob.sync(since=later["next_batch"])
    assert room in again["rooms"]["invite"]


async def test_notification_counts_leave_them_out(api):
    alice, bob, eve, room = await family(api)
    await ignore(bob, eve.user_id)
    await eve.send_text(room, "e1")
    await eve.send_text(room, f"hey {bob.user_id}")  # would highlight
    await alice.send_text(room, "a1")
    counts = (await bob.sync())["rooms"]["join"][room]["unread_notifications"]
    assert counts == {"notification_count": 1, "highlight_count": 0}


async def test_unignoring_shows_their_events_again(api):
    alice, bob, eve, room = await family(api)
    await ignore(bob, eve.user_id)
    await eve.send_text(room, "while ignored")
    first = await bob.sync()
    assert bodies(timeline(first, room)) == []

    r = await bob.put(ignore_path(bob), {"ignored_users": {}})
    assert r.status == 200
    await eve.send_text(room, "after")
    later = await bob.sync(since=first["next_batch"])
    # An incremental sync does not send what was missed (spec) ...
    assert bodies(timeline(later, room)) == ["after"]
    # ... a fresh sync does.
    assert bodies(timeline(await bob.sync(), room)) == ["while ignored", "after"]
    r = await messages(bob, room, dir="b", limit=50)
    assert bodies(r["chunk"]) == ["after", "while ignored"]
