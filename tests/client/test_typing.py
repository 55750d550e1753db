"""Typing notifications: PUT /rooms/{roomId}/typing/{userId} and m.typing in /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#typing-notifications
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

from homeserver.services.tokens import SyncToken
from tests.client.ephemeral_helpers import V3, room_with, set_typing, typing_users
from tests.client.sync_helpers import until_waiting


async def test_typing_start_renew_and_stop_reach_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    first = await bob.sync()
    # Nobody types: no m.typing event at all.
    assert typing_users(first, room) is None

    r = await set_typing(alice, room, True, 30_000)
    assert r.status == 200 and r.body == {}
    after_start = await bob.sync(since=first["next_batch"])
    assert typing_users(after_start, room) == [alice.user_id]
    # An initial sync carries the current typers too; the typer sees themself.
    assert typing_users(await bob.sync(), room) == [alice.user_id]
    assert typing_users(await alice.sync(), room) == [alice.user_id]

    # Renewing the timeout changes nothing anyone sees.
    assert (await set_typing(alice, room, True, 30_000)).status == 200
    renewed = await bob.sync(since=after_start["next_batch"])
    assert room not in renewed["rooms"]["join"]

    # Two typers, then one stops: the event always lists every current typer.
    await set_typing(bob, room, True)
    both = await bob.sync(since=renewed["next_batch"])
    assert sorted(typing_users(both, room)) == sorted([alice.user_id, bob.user_id])
    r = await set_typing(alice, room, False)
    assert r.status == 200 and r.body == {}
    one = await bob.sync(since=both["next_batch"])
    assert typing_users(one, room) == [bob.user_id]
    await set_typing(bob, room, False)
    none = await alice.sync(since=one["next_batch"])
    assert typing_users(none, room) == []
    # Stopping when not typing is no change either.
    await set_typing(bob, room, False)
    assert room not in (await alice.sync(since=none["next_batch"]))["rooms"]["join"]
    assert typing_users(await bob.sync(), room) is None


async def test_typing_bad_requests_are_refused_and_change_nothing(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await room_with(alice, bob)
    await alice.invite(room, carol.user_id)
    first = await bob.sync()
    path = f"{V3}/rooms/{room}/typing/{alice.user_id}"

    # Someone else's typing state.
    r = await bob.put(path, {"typing": True, "timeout": 1000})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    # Not joined: invited only, never in the room, or a room that does not exist.
    for user, room_id in ((carol, room), (await api.register("dave"), room), (alice, "!nowhere:test.local")):
        r = await set_typing(user, room_id, True, 1000)
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    for body, errcode in (
        ({}, "M_MISSING_PARAM"),
        ({"typing": "yes"}, "M_BAD_JSON"),
        ({"typing": True, "timeout": "30000"}, "M_BAD_JSON"),
        ({"typing": True, "timeout": -1}, "M_BAD_JSON"),
        ({"typing": True, "timeout": 1.5}, "M_BAD_JSON"),
    ):
        r = await alice.put(path, body)
        assert r.status == 400 and r.errcode == errcode, (body, r)
    r = await alice.put(path, raw=b"typing")
    assert r.status == 400 and r.errcode == "M_NOT_JSON", r
    r = await alice.put(f"{V3}/rooms/not-a-room/typing/{alice.user_id}", {"typing": True})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r

    later = await bob.sync(since=first["next_batch"])
    assert typing_users(later, room) is None
    assert typing_users(await carol.sync(), room) is None


async def test_typing_reaches_members_only_and_is_filtered(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    outsider = await api.register("outsider")
    room = await room_with(alice, bob)
    other_room = await outsider.create_room()
    await set_typing(alice, room, True, 30_000)
    assert room not in (await outsider.sync())["rooms"]["join"]
    # A typing outsider's own room shows only them.
    await set_typing(outsider, other_room, True, 30_000)
    assert typing_users(await bob.sync(), other_room) is None
    assert typing_users(await outsider.sync(), other_room) == [outsider.user_id]

    only_receipts = json.dumps({"room": {"ephemeral": {"types": ["m.receipt"]}}})
    assert typing_users(await bob.sync(filter=only_receipts), room) is None
    no_typing = json.dumps({"room": {"ephemeral": {"not_types": ["m.typing"]}}})
    assert typing_users(await bob.sync(filter=no_typing), room) is None
    other_rooms = json.dumps({"room": {"ephemeral": {"not_rooms": [room]}}})
    assert typing_users(await bob.sync(filter=other_rooms), room) is None
    assert typing_users(await bob.sync(filter=json.dumps({"room": {"ephemeral": {"types": ["m.typ*"]}}})),
                        room) == [alice.user_id]


async def test_long_poll_is_woken_by_typing(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    first = await bob.sync()
    task = asyncio.create_task(bob.sync(since=first["next_batch"], timeout=60_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    assert not task.done()
    await set_typing(alice, room, True, 30_000)
    result = await asyncio.wait_for(task, 10)
    assert typing_users(result, room) == [alice.user_id]
    assert result["rooms"]["join"][room]["timeline"]["events"] == []


async def test_typing_expires_after_its_timeout(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    first = await bob.sync()
    await set_typing(alice, room, True, 50)
    # Whether or not the typing already expired, bob's syncs end with nobody typing:
    # a long poll is woken by the expiry.
    since = first["next_batch"]
    seen: list[list[str]] = []
    while not seen or seen[-1]:
        result = await asyncio.wait_for(bob.sync(since=since, timeout=60_000), 10)
        users = typing_users(result, room)
        assert users is not None, result.body
        seen.append(users)
        since = result["next_batch"]
    assert seen[-1] == [] and all(s in ([alice.user_id], []) for s in seen)
    assert typing_users(await bob.sync(), room) is None


async def test_a_timeout_longer_than_the_cap_is_accepted(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    r = await set_typing(alice, room, True, 10**15)
    assert r.status == 200 and r.body == {}
    assert typing_users(await alice.sync(), room) == [alice.user_id]


async def test_a_token_from_before_a_restart_is_capped(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    first = await bob.sync()
    # Typing positions live in memory: after a restart a client's token may be ahead.
    ahead = SyncToken.parse(first["next_batch"])
    ahead = dataclasses.replace(ahead, typing=ahead.typing + 1000)
    capped = await bob.sync(since=ahead.serialize())
    assert SyncToken.parse(capped["next_batch"]).typing == SyncToken.parse(first["next_batch"]).typing
    await set_typing(alice, room, True, 30_000)
    result = await bob.sync(since=capped["next_batch"])
    assert typing_users(result, room) == [alice.user_id]


async def test_a_member_who_leaves_stops_typing(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await room_with(alice, bob, carol)
    await set_typing(bob, room, True, 30_000)
    await set_typing(carol, room, True, 30_000)
    first = await alice.sync()
    assert sorted(typing_users(first, room)) == sorted([bob.user_id, carol.user_id])
    r = await bob.post(f"{V3}/rooms/{room}/leave", {})
    assert r.status == 200, r
    r = await alice.post(f"{V3}/rooms/{room}/kick", {"user_id": carol.user_id})
    assert r.status == 200, r
    # Their typing ends with their membership, not 30 seconds later; the long poll sees it.
    since = first["next_batch"]
    while True:
        result = await asyncio.wait_for(alice.sync(since=since, timeout=60_000), 10)
        since = result["next_batch"]
        users = typing_users(result, room)
        if users == []:
            break
    assert typing_users(await alice.sync(), room) is None
