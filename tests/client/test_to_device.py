"""Send-to-device messaging. Spec: https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging"""

from __future__ import annotations

import asyncio

from tests.client.e2e_helpers import V3
from tests.helpers import User


async def _send(user, txn_id, messages, event_type="m.room_key_request"):
    return await user.put(f"{V3}/sendToDevice/{event_type}/{txn_id}", {"messages": messages})


async def test_to_device_delivered_once_then_deleted(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    first = await bob.sync()
    r = await _send(alice, "t1", {bob.user_id: {bob.device_id: {"n": 1}}})
    assert r.status == 200 and r.body == {}
    # A retried transaction is not delivered twice.
    r = await _send(alice, "t1", {bob.user_id: {bob.device_id: {"n": 1}}})
    assert r.status == 200

    got = await bob.sync(first["next_batch"])
    assert got["to_device"]["events"] == [
        {"sender": alice.user_id, "type": "m.room_key_request", "content": {"n": 1}}
    ]
    # Not acknowledged yet: the same token gives the message again.
    again = await bob.sync(first["next_batch"])
    assert again["to_device"]["events"] == got["to_device"]["events"]
    # Syncing past it acknowledges and deletes it.
    later = await bob.sync(got["next_batch"])
    assert later["to_device"]["events"] == []
    assert (await bob.sync(first["next_batch"]))["to_device"]["events"] == []
    assert await api.services.db.fetchval("SELECT count(*) FROM to_device_messages") == 0
    # The same txn id from the same device stays used after delivery.
    await _send(alice, "t1", {bob.user_id: {bob.device_id: {"n": 1}}})
    assert (await bob.sync(later["next_batch"]))["to_device"]["events"] == []


async def test_to_device_star_reaches_every_device_and_wakes_long_poll(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    login = await api.login("bob")
    assert login.status == 200
    bob2 = User(api, bob.user_id, login["access_token"], login["device_id"])
    since = (await bob2.sync())["next_batch"]
    waiting = asyncio.create_task(bob2.sync(since, timeout=30_000))
    await asyncio.sleep(0.1)
    r = await _send(alice, "star", {bob.user_id: {"*": {"hello": "all"}}}, "m.custom")
    assert r.status == 200
    woken = await waiting
    assert [e["content"] for e in woken["to_device"]["events"]] == [{"hello": "all"}]
    assert [e["content"] for e in (await bob.sync())["to_device"]["events"]] == [{"hello": "all"}]
    # Alice's own devices got nothing.
    assert (await alice.sync())["to_device"]["events"] == []


async def test_to_device_bad_requests(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    since = (await bob.sync())["next_batch"]
    for messages in ("x", {"not-a-user": {"D": {}}}, {bob.user_id: ["x"]}, {bob.user_id: {bob.device_id: "x"}}):
        r = await _send(alice, "bad", messages)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), (messages, r)
    r = await alice.put(f"{V3}/sendToDevice/m.x/bad", {})
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")
    r = await alice.put(f"{V3}/sendToDevice/m.x/bad", raw=b"{nope")
    assert (r.status, r.errcode) == (400, "M_NOT_JSON")
    # A refused request did not use its transaction id, and nothing was queued.
    assert (await bob.sync(since))["to_device"]["events"] == []
    r = await _send(alice, "bad", {bob.user_id: {bob.device_id: {"ok": True}}})
    assert r.status == 200
    assert [e["content"] for e in (await bob.sync(since))["to_device"]["events"]] == [{"ok": True}]
    # Unknown devices and other servers' users are accepted and dropped.
    r = await _send(alice, "elsewhere", {bob.user_id: {"NODEVICE": {}}, "@x:elsewhere.example": {"D": {}}})
    assert r.status == 200


async def test_deleting_a_device_drops_its_messages(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    await _send(alice, "t", {bob.user_id: {bob.device_id: {"n": 1}}})
    assert await api.services.db.fetchval("SELECT count(*) FROM to_device_messages") == 1
    r = await bob.post(f"{V3}/logout")
    assert r.status == 200
    assert await api.services.db.fetchval("SELECT count(*) FROM to_device_messages") == 0
