"""/sync costs a fixed number of queries, whatever the number of rooms (issue 7),
and the batched building of rooms keeps what /sync sends.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.client.sync_helpers import V3, answered_behind_a_lock, ids, leave, send_state, state, timeline
from tests.helpers import User, count_queries, record_statements

LAZY = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
REDUNDANT = {"room": {"state": {"lazy_load_members": True, "include_redundant_members": True},
                      "timeline": {"limit": 2}}}


def cold(services: Any) -> None:
    """Empty the event and state group caches, so that both room counts read everything."""
    services.events._cache.clear()
    services.state._groups.clear()


async def sync_counted(services: Any, counted: dict[str, int], user: User, **params: Any) -> tuple[Any, int]:
    cold(services)
    counted["n"] = 0
    r = await user.sync(**params)
    assert r.status == 200, r
    await services.notifications.settle_all()  # the recording of the evaluation, after the response
    return r, counted["n"]


async def populate(api: Any, name: str, rooms: int) -> tuple[User, User, list[str]]:
    """A user in ``rooms`` rooms, each with another member, a topic, messages, a read
    receipt of the other member, and an unread notification for the user."""
    me = await api.register(f"{name}me")
    other = await api.register(f"{name}other")
    room_ids = []
    for i in range(rooms):
        room = await me.create_room(preset="public_chat", name=f"{name} {i}")
        await other.join(room)
        await send_state(me, room, "m.room.topic", {"topic": f"topic {i}"})
        await me.send_text(room, "hello")
        said = await other.send_text(room, "hi")
        r = await other.post(f"{V3}/rooms/{room}/receipt/m.read/{said}", {})
        assert r.status == 200, r
        room_ids.append(room)
    return me, other, room_ids


async def counts_for(api: Any, services: Any, counted: dict[str, int], name: str, rooms: int,
                     sync_filter: dict | None) -> list[int]:
    me, other, room_ids = await populate(api, name, rooms)
    params = {"filter": json.dumps(sync_filter)} if sync_filter else {}
    initial, n_initial = await sync_counted(services, counted, me, **params)
    assert len(initial["rooms"]["join"]) == rooms
    assert all(s["unread_notifications"]["notification_count"] == 1 for s in initial["rooms"]["join"].values())
    for room in room_ids:
        await other.send_text(room, "news")
    incremental, n_incremental = await sync_counted(services, counted, me, since=initial["next_batch"], **params)
    assert len(incremental["rooms"]["join"]) == rooms
    for room in room_ids:
        # A state change (the other member's display name) and a message.
        await send_state(other, room, "m.room.member", {"membership": "join", "displayname": "O"}, other.user_id)
        await other.send_text(room, "more news")
    again, n_again = await sync_counted(services, counted, me, since=incremental["next_batch"], **params)
    assert len(again["rooms"]["join"]) == rooms
    assert all(s["unread_notifications"]["notification_count"] == 3 for s in again["rooms"]["join"].values())
    return [n_initial, n_incremental, n_again]


async def test_queries_do_not_grow_with_the_number_of_rooms(api, services):
    counted = count_queries(services.db)
    few = await counts_for(api, services, counted, "few", 5, None)
    many = await counts_for(api, services, counted, "many", 50, None)
    assert few == many


async def test_lazy_loaded_queries_do_not_grow_with_the_number_of_rooms(api, services):
    counted = count_queries(services.db)
    few = await counts_for(api, services, counted, "few", 5, LAZY)
    many = await counts_for(api, services, counted, "many", 50, LAZY)
    assert few == many


def members(r: Any, room: str) -> set[str]:
    return {e["state_key"] for e in state(r, room) if e["type"] == "m.room.member"}


async def lazy_sync(user: User, sync_filter: dict, since: str | None = None) -> Any:
    r = await user.sync(since=since, filter=json.dumps(sync_filter))
    assert r.status == 200, r
    return r


async def test_lazy_members_already_sent_are_not_sent_again(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    for i in range(3):
        await bob.send_text(room, f"b{i}")
    first = await lazy_sync(alice, LAZY)
    assert members(first, room) == {alice.user_id, bob.user_id}
    # Bob speaks again: the device has his membership already.
    said = await bob.send_text(room, "again")
    second = await lazy_sync(alice, LAZY, first["next_batch"])
    assert ids(timeline(second, room)) == [said]
    assert members(second, room) == set()
    # Carol joins, and speaks after the window: her membership comes once, then not again.
    await carol.join(room)
    for i in range(3):
        await carol.send_text(room, f"c{i}")
    third = await lazy_sync(alice, LAZY, second["next_batch"])
    assert members(third, room) == {carol.user_id}
    await carol.send_text(room, "still me")
    await bob.send_text(room, "and me")
    fourth = await lazy_sync(alice, LAZY, third["next_batch"])
    assert members(fourth, room) == set()
    # With include_redundant_members the senders' memberships always come.
    await bob.send_text(room, "redundant")
    fifth = await lazy_sync(alice, REDUNDANT, fourth["next_batch"])
    assert members(fifth, room) == {bob.user_id}
    # A retried request (its response lost) starts afresh: the senders' members come again.
    retried = await lazy_sync(alice, LAZY, fourth["next_batch"])
    assert members(retried, room) == {bob.user_id}
    # An initial sync forgets what was sent.
    again = await lazy_sync(alice, LAZY)
    assert bob.user_id in members(again, room)


async def test_lazy_members_counted_syncs_do_not_resend(api, services):
    count_queries(services.db)  # (the counting wrappers stay in the path)
    me, other, room_ids = await populate(api, "lazy", 5)
    first = await lazy_sync(me, LAZY)
    assert all(other.user_id in members(first, r) for r in room_ids)
    for room in room_ids:
        await other.send_text(room, "news")
    second = await lazy_sync(me, LAZY, first["next_batch"])
    assert all(members(second, r) == set() for r in room_ids)
    for room in room_ids:
        await other.send_text(room, "more")
    third = await lazy_sync(me, LAZY, second["next_batch"])
    assert all(members(third, r) == set() for r in room_ids)


# What the batched building must keep, with rooms of different kinds in one response.


async def test_rooms_of_one_response_each_get_their_own_state_delta_and_limits(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    quiet = await alice.create_room(preset="public_chat", name="quiet")
    busy = await alice.create_room(preset="public_chat", name="busy")
    renamed = await alice.create_room(preset="public_chat", name="old")
    for room in (quiet, busy, renamed):
        await bob.join(room)
    first = await bob.sync()
    await alice.send_text(quiet, "one")
    new_topic = await send_state(alice, busy, "m.room.topic", {"topic": "in the gap"})
    for i in range(12):
        await alice.send_text(busy, f"m{i}")
    new_name = await send_state(alice, renamed, "m.room.name", {"name": "new"})
    r = await bob.sync(since=first["next_batch"])
    join = r["rooms"]["join"]
    assert join[quiet]["timeline"]["limited"] is False and state(r, quiet) == []
    assert [e["content"].get("body") for e in timeline(r, quiet)] == ["one"]
    assert join[busy]["timeline"]["limited"] is True
    assert ids(state(r, busy)) == [new_topic]
    assert ids(timeline(r, renamed)) == [new_name] and state(r, renamed) == []


async def test_history_visibility_is_applied_per_room_in_one_response(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    shared = await alice.create_room(preset="public_chat")
    joined_only = await alice.create_room(preset="public_chat")
    await send_state(alice, joined_only, "m.room.history_visibility", {"history_visibility": "joined"})
    before = {}
    for room in (shared, joined_only):
        before[room] = await alice.send_text(room, "before bob")
    for room in (shared, joined_only):
        await bob.join(room)
        await alice.send_text(room, "after bob")
    r = await bob.sync()
    assert before[shared] in ids(timeline(r, shared))
    assert before[joined_only] not in ids(timeline(r, joined_only))
    assert "after bob" in [e["content"].get("body") for e in timeline(r, joined_only)]


async def test_leave_and_join_sections_in_one_incremental_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    stays = await alice.create_room(preset="public_chat")
    goes = await alice.create_room(preset="public_chat")
    comes = await alice.create_room(preset="public_chat")
    for room in (stays, goes):
        await bob.join(room)
    first = await bob.sync()
    await alice.send_text(goes, "before the leave")
    await leave(bob, goes)
    await alice.send_text(goes, "after the leave")
    await alice.send_text(stays, "still here")
    await alice.send_text(comes, "before bob came")
    await bob.join(comes)
    r = await bob.sync(since=first["next_batch"])
    events = timeline(r, goes, "leave")
    assert events[-1]["state_key"] == bob.user_id and events[-1]["content"]["membership"] == "leave"
    assert "after the leave" not in [e["content"].get("body") for e in events]
    assert "unread_notifications" not in r["rooms"]["leave"][goes]
    assert [e["content"].get("body") for e in timeline(r, stays)] == ["still here"]
    # The room bob joined comes whole, with its summary.
    section = r["rooms"]["join"][comes]
    assert section["summary"]["m.joined_member_count"] == 2
    assert "m.room.create" in {e["type"] for e in state(r, comes) + timeline(r, comes)}


async def test_lazy_members_survive_a_long_poll_with_nothing_new(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    for i in range(3):
        await bob.send_text(room, f"b{i}")
    first = await lazy_sync(alice, LAZY)
    assert bob.user_id in members(first, room)
    # A long poll that times out with nothing new gives a new token; the device still has bob.
    empty = await alice.sync(since=first["next_batch"], timeout=50, filter=json.dumps(LAZY))
    assert empty["rooms"]["join"] == {}
    await bob.send_text(room, "now")
    r = await lazy_sync(alice, LAZY, empty["next_batch"])
    assert members(r, room) == set()


async def test_a_sync_woken_by_one_message_costs_three_queries(api, services):
    """The long-poll wake path (issue 7): the user's rooms with the window's membership
    events and the device's key counts; the timelines with the state groups they start
    from and what the unread counts need; recording the evaluation, after the response.
    With nothing new, only the first."""
    counted = count_queries(services.db)
    me, other, room_ids = await populate(api, "wake", 5)
    since = (await me.sync())["next_batch"]
    await other.send_text(room_ids[0], "warm")
    since = (await me.sync(since=since))["next_batch"]
    said = await other.send_text(room_ids[2], "news")
    counted["n"] = 0
    r = await me.sync(since=since)
    assert list(r["rooms"]["join"]) == [room_ids[2]] and ids(timeline(r, room_ids[2])) == [said]
    assert r["rooms"]["join"][room_ids[2]]["unread_notifications"]["notification_count"] == 2
    await services.notifications.settle_all()
    assert counted["n"] == 3
    counted["n"] = 0
    r = await me.sync(since=r["next_batch"])
    assert r["rooms"]["join"] == {}
    await services.notifications.settle_all()
    assert counted["n"] == 1


async def test_a_wake_reads_the_rooms_of_the_last_sync_beside_the_memberships(api, services):
    """The rooms whose streams moved among those of the device's last sync are read
    before the memberships read answers: with that read held up by a lock, the
    timelines are read all the same, and the response is whole once it answers."""
    sent = record_statements(services.db)
    me, other, room_ids = await populate(api, "ahead", 3)
    since = (await me.sync())["next_batch"]
    said = await other.send_text(room_ids[1], "news")
    sent.clear()
    # The memberships read counts the device's fallback keys; nothing else here does.
    r = await answered_behind_a_lock(services.db, "e2e_fallback_keys", me.sync(since=since),
                                     lambda: any(s.startswith("WITH windows AS") for s in sent))
    assert list(r["rooms"]["join"]) == [room_ids[1]] and ids(timeline(r, room_ids[1])) == [said]
    assert r["rooms"]["join"][room_ids[1]]["unread_notifications"]["notification_count"] == 2
    assert sum(s.startswith("WITH windows AS") for s in sent) == 1


async def test_a_wrong_guess_of_the_rooms_is_read_again(api, services):
    """A room of the last sync the user has left since, and one joined since, are sent
    as without the guess: left with its leave, joined with all of it."""
    me, other, room_ids = await populate(api, "guess", 2)
    since = (await me.sync())["next_batch"]
    kept, gone = room_ids
    # World-readable: what is sent after the leave is left out by the window alone.
    await send_state(me, gone, "m.room.history_visibility", {"history_visibility": "world_readable"})
    await leave(me, gone)
    await other.send_text(gone, "after the leave")
    joined = await other.create_room(preset="public_chat", name="new")
    await me.join(joined)
    said = await other.send_text(kept, "still here")
    r = await me.sync(since=since)
    assert ids(timeline(r, kept)) == [said]
    events = timeline(r, gone, section="leave")
    assert events[-1]["state_key"] == me.user_id and events[-1]["content"]["membership"] == "leave"
    assert events[-2]["type"] == "m.room.history_visibility"
    assert "m.room.create" in {e["type"] for e in state(r, joined) + timeline(r, joined)}


async def test_a_cold_initial_sync_reads_the_state_beside_the_timelines(api, services):
    # After a restart nothing is cached: the state groups the state sections and the
    # visibility check need are resolved once, read (with the state events) beside the
    # timelines' events, not after them one step at a time (services/sync_rooms.py).
    # (Timelines of messages only, "hello" and "hi": one state group before them all.)
    me, other, room_ids = await populate(api, "cold", 5)
    sent = record_statements(services.db)
    for sync_filter, event_reads in (({"room": {"timeline": {"limit": 2}}}, 2), (LAZY, 3)):
        cold(services)
        sent.clear()
        r = await me.sync(filter=json.dumps(sync_filter))
        assert r.status == 200, r
        chains = [s for s in sent if s.startswith("WITH RECURSIVE chain")]
        events = [s for s in sent if " SELECT e.event_id, e.json," in s]  # EventStore.get_events
        assert len(chains) == 1, chains
        # The timelines' events, and the state's beside them (with lazy loading, the
        # senders' memberships after: only then is it known who they are).
        assert len(events) == event_reads
        for room in room_ids:
            assert {e["type"] for e in state(r, room)} >= {"m.room.create", "m.room.topic"}
            assert members(r, room) <= {me.user_id, other.user_id}


async def test_a_long_poll_with_nothing_new_reads_nothing_until_woken(api, services):
    """A token at which every stream still is (the client just had a response): the long
    poll waits before it reads anything, then reads once, for the news that woke it."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    since = (await bob.sync())["next_batch"]
    counted = count_queries(services.db)
    poll = asyncio.ensure_future(bob.sync(since=since, timeout=10000))
    for _ in range(20):  # the poll reaches the server and waits
        await asyncio.sleep(0.01)
    assert counted["n"] == 0 and not poll.done()
    said = await alice.send_text(room_id, "news")
    r = await poll
    assert ids(timeline(r, room_id)) == [said]
    # At the timeout with nothing new, the response is read then: empty, the same token.
    counted["n"] = 0
    quiet = await bob.sync(since=r["next_batch"], timeout=200)
    assert quiet["next_batch"] == r["next_batch"] and quiet["rooms"]["join"] == {}
    assert counted["n"] > 0
