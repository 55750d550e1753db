"""Device list changes in /sync and /keys/changes.

Spec: https://spec.matrix.org/v1.19/client-server-api/#tracking-the-device-list-for-a-user
"""

from __future__ import annotations

import asyncio

from tests.client.e2e_helpers import V3, query, upload_device_keys
from tests.helpers import User


async def _changes(user: User, since: str):
    sync = await user.sync(since)
    return sync["device_lists"], sync["next_batch"]


async def test_room_partner_sees_key_changes_and_strangers_do_not(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await alice.create_room(preset="private_chat", invite=[bob.user_id])
    await bob.join(room)
    a_since = (await alice.sync())["next_batch"]
    c_since = (await carol.sync())["next_batch"]
    b_since = (await bob.sync())["next_batch"]

    await upload_device_keys(bob)
    lists, a_since = await _changes(alice, a_since)
    assert lists == {"changed": [bob.user_id], "left": []}
    # Bob hears of his own change too; Carol shares no room with him.
    lists, b_since = await _changes(bob, b_since)
    assert lists["changed"] == [bob.user_id]
    lists, c_since = await _changes(carol, c_since)
    assert lists == {"changed": [], "left": []}
    # Reported once.
    lists, a_since = await _changes(alice, a_since)
    assert lists == {"changed": [], "left": []}

    # A long poll wakes for a device list change.
    waiting = asyncio.create_task(alice.sync(a_since, timeout=30_000))
    await asyncio.sleep(0.1)
    login = await api.login("bob")
    bob2 = User(api, bob.user_id, login["access_token"], login["device_id"])
    await upload_device_keys(bob2)
    woken = await waiting
    assert woken["device_lists"]["changed"] == [bob.user_id]
    a_since = woken["next_batch"]

    # Deleting a device removes its keys and is a change.
    r = await bob2.post(f"{V3}/logout")
    assert r.status == 200
    lists, a_since = await _changes(alice, a_since)
    assert lists["changed"] == [bob.user_id]
    assert list((await query(alice, {bob.user_id: []}))["device_keys"][bob.user_id]) == [bob.device_id]


async def test_joining_and_leaving_shared_rooms(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    a_since = (await alice.sync())["next_batch"]
    await bob.join(room)
    lists, a_since = await _changes(alice, a_since)
    assert lists == {"changed": [bob.user_id], "left": []}

    r = await bob.post(f"{V3}/rooms/{room}/leave", {})
    assert r.status == 200
    lists, a_since = await _changes(alice, a_since)
    assert lists == {"changed": [], "left": [bob.user_id]}

    # The joiner learns of the members of the room he joins, and leaves them when he leaves.
    b_since = (await bob.sync())["next_batch"]
    await bob.join(room)
    lists, b_since = await _changes(bob, b_since)
    assert lists == {"changed": [alice.user_id], "left": []}
    r = await bob.post(f"{V3}/rooms/{room}/leave", {})
    lists, b_since = await _changes(bob, b_since)
    assert lists == {"changed": [], "left": [alice.user_id]}


async def test_keys_changes_between_tokens(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    start = (await alice.sync())["next_batch"]
    await upload_device_keys(bob)
    end = (await alice.sync())["next_batch"]

    r = await alice.get(f"{V3}/keys/changes", params={"from": start, "to": end})
    assert r.status == 200, r
    assert r.body == {"changed": [bob.user_id], "left": []}
    r = await alice.get(f"{V3}/keys/changes", params={"from": end, "to": end})
    assert r.body == {"changed": [], "left": []}
    r = await alice.get(f"{V3}/keys/changes", params={"from": start})
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")
    r = await alice.get(f"{V3}/keys/changes", params={"from": "garbage", "to": end})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
