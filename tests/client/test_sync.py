"""GET /sync: initial and incremental syncs, long polling, tokens.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync
"""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from tests.client.sync_helpers import (
    V3, all_events, bodies, ids, leave, messages, send_state, state, state_keys, timeline, until_waiting,
)
from tests.helpers import Api, User

SYNC = f"{V3}/sync"


async def public_room_with(alice: User, *others: User, **create: object) -> str:
    room = await alice.create_room(preset="public_chat", **create)
    for other in others:
        await other.join(room)
    return room


# Initial sync


async def test_initial_sync_timeline_is_the_last_ten_events_and_limited(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    for i in range(15):
        await alice.send_text(room, f"m{i}")
    r = await alice.sync()
    section = r["rooms"]["join"][room]
    events = section["timeline"]["events"]
    assert len(events) == 10
    assert bodies(events) == [f"m{i}" for i in range(5, 15)]
    assert section["timeline"]["limited"] is True
    assert isinstance(section["timeline"]["prev_batch"], str)
    assert isinstance(r["next_batch"], str) and r["next_batch"]
    # Timeline events carry no room_id in /sync (ClientEventWithoutRoomID).
    assert all("room_id" not in e for e in events)
    assert all({"event_id", "sender", "type", "origin_server_ts", "content"} <= e.keys() for e in events)


async def test_initial_sync_of_a_small_room_is_not_limited_and_state_is_empty(api):
    alice = await api.register("alice")
    room = await alice.create_room(name="Small")
    await alice.send_text(room, "hello")
    r = await alice.sync()
    section = r["rooms"]["join"][room]
    events = section["timeline"]["events"]
    assert section["timeline"]["limited"] is False
    # The whole room fits: it starts at the create event, so no state precedes it.
    assert events[0]["type"] == "m.room.create"
    assert events[-1]["content"]["body"] == "hello"
    assert section["state"]["events"] == []
    assert ids(events) == ids(await all_events(alice, room))


async def test_initial_sync_state_is_the_state_before_the_timeline(api):
    alice = await api.register("alice")
    room = await alice.create_room(name="Old name", topic="A topic")
    for i in range(12):
        await alice.send_text(room, f"m{i}")
    new_name = await send_state(alice, room, "m.room.name", {"name": "New name"})
    r = await alice.sync()
    events = timeline(r, room)
    state_events = state(r, room)
    assert new_name in ids(events)
    # The state is the state at the start of the timeline: the old name.
    by_key = {(e["type"], e["state_key"]): e for e in state_events}
    assert by_key[("m.room.name", "")]["content"] == {"name": "Old name"}
    assert by_key[("m.room.topic", "")]["content"]["topic"] == "A topic"
    assert {("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", ""),
            ("m.room.member", alice.user_id)} <= by_key.keys()
    # No event is both in state and timeline.
    assert not set(ids(events)) & set(ids(state_events))
    # State plus timeline state events make up the current state.
    current = await alice.get(f"{V3}/rooms/{room}/state")
    assert state_keys(state_events) | state_keys(events) == state_keys(current.body)


async def test_initial_sync_summary_heroes_and_counts(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await public_room_with(alice, bob)
    await alice.invite(room, carol.user_id)
    r = await alice.sync()
    summary = r["rooms"]["join"][room]["summary"]
    assert summary["m.joined_member_count"] == 2
    assert summary["m.invited_member_count"] == 1
    assert set(summary["m.heroes"]) == {bob.user_id, carol.user_id}
    assert alice.user_id not in summary["m.heroes"]


async def test_summary_heroes_are_ordered_by_stream_order(api):
    alice = await api.register("alice")
    zed = await api.register("zed")
    bob = await api.register("bob")
    room = await public_room_with(alice, zed, bob)
    r = await bob.sync()
    # "the first 5 members of the room, ordered by stream ordering", never the user themself.
    assert r["rooms"]["join"][room]["summary"]["m.heroes"] == [alice.user_id, zed.user_id]


async def test_summary_heroes_fall_back_to_members_who_left(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    await leave(bob, room)
    r = await alice.sync()
    summary = r["rooms"]["join"][room]["summary"]
    assert summary["m.joined_member_count"] == 1
    assert summary["m.invited_member_count"] == 0
    # With no other joined or invited member, heroes are taken from those who left.
    assert summary["m.heroes"] == [bob.user_id]


async def test_initial_sync_account_data(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    r = await alice.put(f"{V3}/user/{alice.user_id}/account_data/com.example.settings", {"theme": "dark"})
    assert r.status == 200
    r = await alice.put(f"{V3}/user/{alice.user_id}/rooms/{room}/account_data/com.example.room", {"pinned": True})
    assert r.status == 200
    s = await alice.sync()
    assert {"type": "com.example.settings", "content": {"theme": "dark"}} in s["account_data"]["events"]
    assert s["rooms"]["join"][room]["account_data"]["events"] == [
        {"type": "com.example.room", "content": {"pinned": True}}
    ]
    # Incremental: only what changed.
    again = await alice.sync(since=s["next_batch"])
    assert again["account_data"]["events"] == []
    assert room not in again["rooms"]["join"]
    await alice.put(f"{V3}/user/{alice.user_id}/account_data/com.example.settings", {"theme": "light"})
    third = await alice.sync(since=again["next_batch"])
    assert third["account_data"]["events"] == [{"type": "com.example.settings", "content": {"theme": "light"}}]


async def test_sync_response_has_the_required_top_level_keys(api):
    alice = await api.register("alice")
    r = await alice.sync()
    assert isinstance(r["next_batch"], str)
    assert set(r["rooms"]) >= {"join", "invite", "leave"}
    assert r["rooms"]["join"] == {}


async def test_sync_requires_authentication(api):
    r = await api.request("GET", SYNC)
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"
    r = await api.request("GET", SYNC, token="not-a-token")
    assert r.status == 401 and r.errcode == "M_UNKNOWN_TOKEN"


# Incremental sync


async def test_incremental_sync_has_only_new_events_and_skips_quiet_rooms(api):
    alice = await api.register("alice")
    busy = await alice.create_room()
    quiet = await alice.create_room()
    await alice.send_text(busy, "old")
    first = await alice.sync()
    assert {busy, quiet} <= first["rooms"]["join"].keys()
    new = await alice.send_text(busy, "new")
    second = await alice.sync(since=first["next_batch"])
    assert quiet not in second["rooms"]["join"]
    section = second["rooms"]["join"][busy]
    assert ids(section["timeline"]["events"]) == [new]
    assert section["timeline"]["limited"] is False
    assert section["state"]["events"] == []
    # Nothing new at all: no rooms, and the token still works.
    third = await alice.sync(since=second["next_batch"])
    assert third["rooms"]["join"] == {}
    fourth = await alice.sync(since=third["next_batch"])
    assert fourth["rooms"]["join"] == {}


async def test_incremental_sync_with_a_state_change_in_the_timeline(api):
    alice = await api.register("alice")
    room = await alice.create_room(name="One")
    first = await alice.sync()
    name_id = await send_state(alice, room, "m.room.name", {"name": "Two"})
    second = await alice.sync(since=first["next_batch"])
    events = timeline(second, room)
    assert ids(events) == [name_id]
    assert events[0]["state_key"] == ""
    assert events[0]["unsigned"]["prev_content"] == {"name": "One"}
    assert state(second, room) == []


async def test_newly_joined_room_carries_full_state(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat", name="Lobby", topic="Talk")
    for i in range(12):
        await alice.send_text(room, f"m{i}")
    first = await bob.sync()
    assert room not in first["rooms"]["join"]
    await bob.join(room)
    second = await bob.sync(since=first["next_batch"])
    section = second["rooms"]["join"][room]
    events = section["timeline"]["events"]
    assert events[-1]["type"] == "m.room.member" and events[-1]["state_key"] == bob.user_id
    assert events[-1]["content"]["membership"] == "join"
    # The full state: create, power levels, name, topic, alice's membership...
    keys = state_keys(section["state"]["events"]) | state_keys(events)
    current = await bob.get(f"{V3}/rooms/{room}/state")
    assert keys == state_keys(current.body)
    assert ("m.room.create", "") in state_keys(section["state"]["events"])
    assert section["summary"]["m.joined_member_count"] == 2


async def test_invite_appears_with_invite_state_then_moves_to_join(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(name="Secret plans")
    first = await bob.sync()
    await alice.invite(room, bob.user_id)
    second = await bob.sync(since=first["next_batch"])
    assert room not in second["rooms"]["join"]
    invite_state = second["rooms"]["invite"][room]["invite_state"]["events"]
    by_key = {(e["type"], e["state_key"]): e for e in invite_state}
    invite_event = by_key[("m.room.member", bob.user_id)]
    assert invite_event["content"]["membership"] == "invite"
    assert invite_event["sender"] == alice.user_id
    assert by_key[("m.room.name", "")]["content"] == {"name": "Secret plans"}
    assert ("m.room.create", "") in by_key
    assert ("m.room.join_rules", "") in by_key
    # Stripped state: no event ids, signatures or timestamps.
    assert all(set(e) == {"type", "state_key", "sender", "content"} for e in invite_state)
    # An initial sync shows the invite too.
    initial = await bob.sync()
    assert room in initial["rooms"]["invite"]
    # Next sync: the invite is not repeated.
    third = await bob.sync(since=second["next_batch"])
    assert room not in third["rooms"]["invite"]
    await bob.join(room)
    fourth = await bob.sync(since=third["next_batch"])
    assert room not in fourth["rooms"]["invite"]
    assert room in fourth["rooms"]["join"]
    assert ("m.room.create", "") in state_keys(state(fourth, room)) | state_keys(timeline(fourth, room))


async def test_leave_appears_in_leave_with_timeline_up_to_the_leave(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    first = await bob.sync()
    said = await alice.send_text(room, "before you go")
    await leave(bob, room)
    after = await alice.send_text(room, "after bob left")
    second = await bob.sync(since=first["next_batch"])
    assert room not in second["rooms"]["join"]
    section = second["rooms"]["leave"][room]
    events = section["timeline"]["events"]
    assert ids(events)[0] == said
    assert events[-1]["type"] == "m.room.member" and events[-1]["state_key"] == bob.user_id
    assert events[-1]["content"]["membership"] == "leave"
    assert after not in ids(events)
    # Later messages of the room do not reach bob, and the leave is not repeated.
    await alice.send_text(room, "still talking")
    third = await bob.sync(since=second["next_batch"])
    assert room not in third["rooms"]["leave"] and room not in third["rooms"]["join"]


async def test_kicked_user_sees_the_kick_in_leave(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    first = await bob.sync()
    r = await alice.post(f"{V3}/rooms/{room}/kick", {"user_id": bob.user_id, "reason": "spam"})
    assert r.status == 200
    second = await bob.sync(since=first["next_batch"])
    kick = timeline(second, room, "leave")[-1]
    assert kick["sender"] == alice.user_id and kick["state_key"] == bob.user_id
    assert kick["content"]["membership"] == "leave" and kick["content"]["reason"] == "spam"


async def test_banned_user_sees_the_ban_in_leave(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    first = await bob.sync()
    r = await alice.post(f"{V3}/rooms/{room}/ban", {"user_id": bob.user_id})
    assert r.status == 200
    second = await bob.sync(since=first["next_batch"])
    assert room not in second["rooms"]["join"]
    ban = timeline(second, room, "leave")[-1]
    assert ban["content"]["membership"] == "ban" and ban["state_key"] == bob.user_id


async def test_membership_changes_of_others_appear_in_the_timeline(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    first = await alice.sync()
    await bob.join(room)
    second = await alice.sync(since=first["next_batch"])
    events = timeline(second, room)
    assert [(e["type"], e["state_key"], e["content"]["membership"]) for e in events] == [
        ("m.room.member", bob.user_id, "join")
    ]
    assert second["rooms"]["join"][room]["summary"]["m.joined_member_count"] == 2
    await leave(bob, room)
    third = await alice.sync(since=second["next_batch"])
    left = timeline(third, room)[-1]
    assert left["state_key"] == bob.user_id and left["content"]["membership"] == "leave"
    assert left["unsigned"]["prev_content"]["membership"] == "join"


async def test_limited_incremental_sync_and_prev_batch_fill_the_gap(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    first = await bob.sync()
    sent = [await alice.send_text(room, f"m{i}") for i in range(15)]
    second = await bob.sync(since=first["next_batch"])
    section = second["rooms"]["join"][room]
    assert section["timeline"]["limited"] is True
    assert ids(section["timeline"]["events"]) == sent[5:]
    # /messages backwards from prev_batch to the old token returns exactly the gap.
    r = await messages(bob, room, dir="b", **{"from": section["timeline"]["prev_batch"]},
                       to=first["next_batch"], limit=50)
    assert r.status == 200, r
    assert ids(r["chunk"]) == list(reversed(sent[:5]))
    # Without `to`, paging back from prev_batch continues seamlessly into older history.
    r = await messages(bob, room, dir="b", **{"from": section["timeline"]["prev_batch"]}, limit=5)
    assert ids(r["chunk"]) == list(reversed(sent[:5]))


async def test_limited_incremental_sync_state_has_the_changes_in_the_gap(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob, name="Before")
    first = await bob.sync()
    name_id = await send_state(alice, room, "m.room.name", {"name": "During gap"})
    for i in range(12):
        await alice.send_text(room, f"m{i}")
    second = await bob.sync(since=first["next_batch"])
    section = second["rooms"]["join"][room]
    assert section["timeline"]["limited"] is True
    # The state delta brings the client from `since` to the start of the timeline.
    assert ids(section["state"]["events"]) == [name_id]


# full_state


async def test_full_state_in_incremental_sync(api):
    alice = await api.register("alice")
    room = await alice.create_room(name="Full")
    quiet = await alice.create_room(name="Quiet")
    first = await alice.sync()
    new = await alice.send_text(room, "hi")
    second = await alice.sync(since=first["next_batch"], full_state="true")
    section = second["rooms"]["join"][room]
    assert ids(section["timeline"]["events"]) == [new]
    current = await alice.get(f"{V3}/rooms/{room}/state")
    assert state_keys(section["state"]["events"]) == state_keys(current.body)
    # Every room is included with its full state, even without new events.
    quiet_state = second["rooms"]["join"][quiet]["state"]["events"]
    assert ("m.room.name", "") in state_keys(quiet_state)
    assert second["rooms"]["join"][quiet]["timeline"]["events"] == []


async def test_full_state_must_be_a_boolean(api):
    alice = await api.register("alice")
    for value in ["maybe", "TRUE", "2"]:
        r = await alice.get(SYNC, params={"full_state": value})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (value, r)


# Long polling


async def test_long_poll_returns_when_another_user_sends(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    first = await bob.sync()
    task = asyncio.create_task(bob.sync(since=first["next_batch"], timeout=60_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    assert not task.done()
    sent = await alice.send_text(room, "wake up")
    result = await asyncio.wait_for(task, 10)
    assert ids(timeline(result, room)) == [sent]
    assert timeline(result, room)[0]["content"]["body"] == "wake up"


async def test_long_poll_wakes_the_invitee(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room()
    first = await bob.sync()
    task = asyncio.create_task(bob.sync(since=first["next_batch"], timeout=60_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    await alice.invite(room, bob.user_id)
    result = await asyncio.wait_for(task, 10)
    assert room in result["rooms"]["invite"]


async def test_long_poll_wakes_on_own_account_data(api):
    alice = await api.register("alice")
    first = await alice.sync()
    task = asyncio.create_task(alice.sync(since=first["next_batch"], timeout=60_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    await alice.put(f"{V3}/user/{alice.user_id}/account_data/com.example.x", {"a": 1})
    result = await asyncio.wait_for(task, 10)
    assert result["account_data"]["events"] == [{"type": "com.example.x", "content": {"a": 1}}]


async def test_long_poll_times_out_empty(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    first = await alice.sync()
    r = await alice.sync(since=first["next_batch"], timeout=100)
    assert r["rooms"]["join"] == {}
    assert r["rooms"]["invite"] == {} and r["rooms"]["leave"] == {}
    # The token it returns is still good for the next sync.
    sent = await alice.send_text(room, "now")
    again = await alice.sync(since=r["next_batch"])
    assert ids(timeline(again, room)) == [sent]


async def test_long_poll_ignores_unrelated_rooms(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    alices_room = await public_room_with(alice, bob)
    carols_room = await carol.create_room()
    first = await bob.sync()
    task = asyncio.create_task(bob.sync(since=first["next_batch"], timeout=60_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    await carol.send_text(carols_room, "not for bob")
    sent = await alice.send_text(alices_room, "for bob")
    result = await asyncio.wait_for(task, 10)
    assert list(result["rooms"]["join"]) == [alices_room]
    assert ids(timeline(result, alices_room)) == [sent]


# Tokens


async def test_since_token_at_the_head_still_works(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    first = await alice.sync()
    same = await alice.sync(since=first["next_batch"])
    assert same["rooms"]["join"] == {}
    sent = await alice.send_text(room, "x")
    r = await alice.sync(since=same["next_batch"])
    assert ids(timeline(r, room)) == [sent]


async def test_since_token_from_the_future_does_not_hide_new_events(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    await bob.sync()
    # Every position in the future (a shorter token reads its missing ones as 0: presence
    # since 0 would then be news at once).
    task = asyncio.create_task(bob.sync(since="s" + "_".join(["999999"] * 7), timeout=60_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    sent = await alice.send_text(room, "after")
    r = await asyncio.wait_for(task, 10)
    assert ids(timeline(r, room)) == [sent]
    again = await bob.sync(since=r["next_batch"])
    assert again["rooms"]["join"] == {}


async def test_invalid_since_token_is_rejected(api):
    alice = await api.register("alice")
    for since in ["garbage", "s", "sx_1", "s-1_0", "s1_-1", "1_1", "s1__1", "s 1", "s+1", "s\u0661",
                  "s" + "9" * 30, "s1_" + "9" * 30]:
        r = await alice.get(SYNC, params={"since": since})
        assert r.status == 400, (since, r)
        assert r.errcode == "M_INVALID_PARAM"


async def test_invalid_timeout_is_rejected(api):
    alice = await api.register("alice")
    for timeout in ["abc", "-5", "1.5"]:
        r = await alice.get(SYNC, params={"timeout": timeout})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (timeout, r)


async def test_sync_token_survives_a_restart(api, tmp_path, database_dsn):
    from homeserver.app import create_app
    from homeserver.server import open_services
    from tests.conftest import make_config

    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    first = await bob.sync()
    sent = [await alice.send_text(room, f"m{i}") for i in range(3)]

    # A second server on the same database: the stream positions are read back from it.
    config = make_config(tmp_path, database_dsn)
    async with open_services(config) as restarted:
        client = TestClient(TestServer(create_app(restarted)))
        await client.start_server()
        try:
            api2 = Api(client, restarted)
            bob2 = User(api2, bob.user_id, bob.access_token, bob.device_id)
            alice2 = User(api2, alice.user_id, alice.access_token, alice.device_id)
            r = await bob2.sync(since=first["next_batch"])
            assert ids(timeline(r, room)) == sent
            assert r["rooms"]["join"][room]["timeline"]["limited"] is False
            later = await alice2.send_text(room, "after the restart")
            again = await bob2.sync(since=r["next_batch"])
            assert ids(timeline(again, room)) == [later]
            # The old token still gives the whole delta, and nothing before it.
            replay = await bob2.sync(since=first["next_batch"])
            assert ids(timeline(replay, room)) == sent + [later]
        finally:
            await client.close()


# use_state_after (spec v1.16)


async def test_use_state_after_in_initial_sync(api):
    alice = await api.register("alice")
    room = await alice.create_room(name="Old")
    for i in range(10):
        await alice.send_text(room, f"m{i}")
    renamed = await send_state(alice, room, "m.room.name", {"name": "New"})
    r = await alice.sync(use_state_after="true")
    section = r["rooms"]["join"][room]
    assert "state" not in section
    state_after = section["state_after"]["events"]
    # The state at the end of the timeline, complete: it repeats state events of the timeline.
    assert renamed in ids(timeline(r, room))
    by_key = {(e["type"], e["state_key"]): e for e in state_after}
    assert by_key[("m.room.name", "")]["event_id"] == renamed
    current = await alice.get(f"{V3}/rooms/{room}/state")
    assert state_keys(state_after) == state_keys(current.body)
    # Without the parameter (or with false) the classic `state` comes back.
    for params in ({}, {"use_state_after": "false"}):
        classic = await alice.sync(**params)
        assert "state_after" not in classic["rooms"]["join"][room]
        assert "state" in classic["rooms"]["join"][room]
    r = await alice.get(SYNC, params={"use_state_after": "yes"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_use_state_after_in_incremental_syncs(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob, name="One")
    first = await bob.sync(use_state_after="true")
    said = await alice.send_text(room, "hi")
    renamed = await send_state(alice, room, "m.room.name", {"name": "Two"})
    second = await bob.sync(since=first["next_batch"], use_state_after="true")
    section = second["rooms"]["join"][room]
    assert ids(section["timeline"]["events"]) == [said, renamed]
    assert ids(section["state_after"]["events"]) == [renamed]
    assert "state" not in section
    # Nothing new: the room is absent.
    third = await bob.sync(since=second["next_batch"], use_state_after="true")
    assert room not in third["rooms"]["join"]
    # A state change a timeline filter hides still arrives in state_after.
    only_messages = '{"room": {"timeline": {"types": ["m.room.message"]}}}'
    await alice.send_text(room, "before the topic")
    topic = await send_state(alice, room, "m.room.topic", {"topic": "Hidden from the timeline"})
    fourth = await bob.sync(since=third["next_batch"], use_state_after="true", filter=only_messages)
    section = fourth["rooms"]["join"][room]
    assert bodies(section["timeline"]["events"]) == ["before the topic"]
    assert ids(section["state_after"]["events"]) == [topic]
    # Even when the filter leaves the timeline empty.
    topic2 = await send_state(alice, room, "m.room.topic", {"topic": "Again"})
    fifth = await bob.sync(since=fourth["next_batch"], use_state_after="true", filter=only_messages)
    section = fifth["rooms"]["join"][room]
    assert section["timeline"]["events"] == []
    assert ids(section["state_after"]["events"]) == [topic2]


async def test_use_state_after_in_leave(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await public_room_with(alice, bob)
    first = await bob.sync(use_state_after="true")
    await leave(bob, room)
    second = await bob.sync(since=first["next_batch"], use_state_after="true")
    section = second["rooms"]["leave"][room]
    assert "state" not in section
    members = {e["state_key"]: e["content"]["membership"] for e in section["state_after"]["events"]
               if e["type"] == "m.room.member"}
    assert members == {bob.user_id: "leave"}
