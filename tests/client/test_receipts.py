"""Receipts: POST /rooms/{roomId}/receipt/{receiptType}/{eventId} and m.receipt in /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#receipts
"""

from __future__ import annotations

import asyncio

from tests.client.ephemeral_helpers import V3, receipt_events, receipts, room_with, send_receipt
from tests.client.sync_helpers import send_event, until_waiting


async def stored_receipts(services) -> list[tuple[str, str, str, str]]:
    rows = await services.db.fetch(
        "SELECT user_id, receipt_type, thread_id, event_id FROM receipts ORDER BY user_id, receipt_type, thread_id"
    )
    return [tuple(r) for r in rows]


def thread_reply(root: str, body: str) -> dict:
    return {"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}


def only_ts(receipt: dict) -> int:
    assert set(receipt) == {"ts"}, receipt
    assert isinstance(receipt["ts"], int) and receipt["ts"] > 0
    return receipt["ts"]


async def test_read_receipt_reaches_initial_and_incremental_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    first_alice = await alice.sync()
    message = await alice.send_text(room, "hello")
    r = await send_receipt(bob, room, message)
    assert r.status == 200 and r.body == {}

    incremental = await alice.sync(since=first_alice["next_batch"])
    content = receipts(incremental, room)
    assert list(content) == [message] and list(content[message]) == ["m.read"]
    only_ts(content[message]["m.read"][bob.user_id])
    for user in (alice, bob):
        initial = receipts(await user.sync(), room)
        assert list(initial[message]["m.read"]) == [bob.user_id]

    # Incremental syncs carry only what changed since: nothing, then only the newer receipt.
    quiet = await alice.sync(since=incremental["next_batch"])
    assert receipts(quiet, room) is None
    second = await bob.send_text(room, "hi")
    await send_receipt(alice, room, second)
    changed = await bob.sync(since=incremental["next_batch"])
    assert receipts(changed, room) == {second: {"m.read": {alice.user_id: receipts(changed, room)[second]["m.read"][
        alice.user_id]}}}
    # A receipt replaces the user's older one: the initial sync shows each user once.
    await send_receipt(bob, room, second)
    initial = receipts(await alice.sync(), room)
    assert initial == {second: {"m.read": {alice.user_id: initial[second]["m.read"][alice.user_id],
                                           bob.user_id: initial[second]["m.read"][bob.user_id]}}}


async def test_private_receipts_are_seen_by_their_sender_only(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    message = await alice.send_text(room, "secret read")
    first_alice = await alice.sync()
    first_bob = await bob.sync()
    r = await send_receipt(bob, room, message, "m.read.private")
    assert r.status == 200 and r.body == {}
    assert await stored_receipts(services) == [(bob.user_id, "m.read.private", "", message)]

    # Bob sees his private receipt, initial and incremental.
    own = await bob.sync(since=first_bob["next_batch"])
    only_ts(receipts(own, room)[message]["m.read.private"][bob.user_id])
    assert list(receipts(await bob.sync(), room)[message]) == ["m.read.private"]
    # Alice never does.
    assert room not in (await alice.sync(since=first_alice["next_batch"]))["rooms"]["join"]
    assert receipts(await alice.sync(), room) is None
    # A public receipt next to it is seen by both, the private one still by bob only.
    await send_receipt(bob, room, message, "m.read")
    assert receipts(await alice.sync(), room) == {message: {"m.read": {bob.user_id: receipts(
        await alice.sync(), room)[message]["m.read"][bob.user_id]}}}
    assert set(receipts(await bob.sync(), room)[message]) == {"m.read", "m.read.private"}


async def test_threaded_receipts_are_kept_apart(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    root = await alice.send_text(room, "thread root")
    reply = await send_event(alice, room, "m.room.message", thread_reply(root, "in the thread"), "reply")
    for event_id, body in ((root, {"thread_id": "main"}), (reply, {}), (reply, {"thread_id": root})):
        r = await send_receipt(bob, room, event_id, body=body)
        assert r.status == 200 and r.body == {}, r
    assert await stored_receipts(services) == [
        (bob.user_id, "m.read", "", reply),
        (bob.user_id, "m.read", root, reply),
        (bob.user_id, "m.read", "main", root),
    ]
    # One m.receipt event per thread: bob's unthreaded and threaded receipts on the same
    # event both reach the client.
    events = receipt_events(await alice.sync(), room)
    threads = {}
    for content in events:
        for event_id, by_type in content.items():
            data = by_type["m.read"][bob.user_id]
            only_ts({k: v for k, v in data.items() if k != "thread_id"})
            threads[data.get("thread_id")] = event_id
    assert len(events) == 3
    assert threads == {None: reply, root: reply, "main": root}


async def test_a_threaded_receipt_must_belong_to_its_thread(api, services):
    alice = await api.register("alice")
    room = await alice.create_room()
    root = await alice.send_text(room, "root")
    other_root = await alice.send_text(room, "another root")
    in_thread = await send_event(alice, room, "m.room.message", thread_reply(root, "reply"), "in-thread")
    edit = await send_event(alice, room, "m.room.message", {
        "msgtype": "m.text", "body": "* reply", "m.new_content": {"msgtype": "m.text", "body": "reply"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": in_thread},
    }, "edit")
    reaction = await send_event(alice, room, "m.reaction", {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"},
    }, "reaction")
    unrelated = await alice.send_text(room, "main timeline")

    for event_id, thread_id in ((in_thread, "main"), (edit, "main"), (unrelated, root), (in_thread, other_root),
                                (root, in_thread), (reaction, other_root)):
        r = await send_receipt(alice, room, event_id, body={"thread_id": thread_id})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (event_id, thread_id, r)
    assert await stored_receipts(services) == []
    # The root and what relates to it belong to the thread; the root and its reactions
    # are in the main timeline too.
    for event_id, thread_id in ((root, "main"), (reaction, "main"), (unrelated, "main"), (root, root),
                                (reaction, root), (in_thread, root), (edit, root)):
        r = await send_receipt(alice, room, event_id, body={"thread_id": thread_id})
        assert r.status == 200 and r.body == {}, (event_id, thread_id, r)


async def test_a_receipt_never_moves_back(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    older = await alice.send_text(room, "one")
    newer = await alice.send_text(room, "two")
    await send_receipt(bob, room, newer)
    first = await alice.sync()
    r = await send_receipt(bob, room, older)
    assert r.status == 200 and r.body == {}
    assert await stored_receipts(services) == [(bob.user_id, "m.read", "", newer)]
    assert room not in (await alice.sync(since=first["next_batch"]))["rooms"]["join"]


async def test_bad_receipts_are_refused_and_store_nothing(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    outsider = await api.register("outsider")
    room = await room_with(alice, bob)
    other_room = await alice.create_room()
    message = await alice.send_text(room, "hello")
    elsewhere = await alice.send_text(other_room, "elsewhere")

    for receipt_type in ("m.unknown", "m.READ", "m.typing"):
        r = await send_receipt(bob, room, message, receipt_type)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (receipt_type, r)
    for user, room_id in ((outsider, room), (bob, other_room), (bob, "!unknown:test.local")):
        r = await send_receipt(user, room_id, message)
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    for event_id in ("$unknown", elsewhere, "not-an-event"):
        r = await send_receipt(bob, room, event_id)
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", (event_id, r)
    for body in ({"thread_id": 1}, {"thread_id": ""}, {"thread_id": None}, {"thread_id": "thread"},
                 {"thread_id": ["main"]}):
        r = await send_receipt(bob, room, message, body=body)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (body, r)
    r = await send_receipt(bob, room, message, "m.fully_read", body={"thread_id": "main"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await bob.post(f"{V3}/rooms/{room}/receipt/m.read/{message}", raw=b"[1]")
    assert r.status == 400 and r.errcode == "M_BAD_JSON", r
    r = await bob.post(f"{V3}/rooms/{room}/receipt/m.read/{message}", raw=b"{")
    assert r.status == 400 and r.errcode == "M_NOT_JSON", r
    r = await bob.post(f"{V3}/rooms/not-a-room/receipt/m.read/{message}", {})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r

    assert await stored_receipts(services) == []
    assert await services.db.fetchval("SELECT count(*) FROM account_data WHERE type = 'm.fully_read'") == 0


async def test_receipt_without_a_body_is_accepted(api, services):
    alice = await api.register("alice")
    room = await alice.create_room()
    message = await alice.send_text(room, "hello")
    r = await alice.request("POST", f"{V3}/rooms/{room}/receipt/m.read/{message}")
    assert r.status == 200 and r.body == {}, r
    assert await stored_receipts(services) == [(alice.user_id, "m.read", "", message)]


async def test_fully_read_receipt_moves_the_read_marker(api, services):
    alice = await api.register("alice")
    room = await alice.create_room()
    message = await alice.send_text(room, "hello")
    first = await alice.sync()
    r = await send_receipt(alice, room, message, "m.fully_read")
    assert r.status == 200 and r.body == {}
    marker = await alice.get(f"{V3}/user/{alice.user_id}/rooms/{room}/account_data/m.fully_read")
    assert marker.status == 200 and marker.body == {"event_id": message}
    later = await alice.sync(since=first["next_batch"])
    section = later["rooms"]["join"][room]
    assert section["account_data"]["events"] == [{"type": "m.fully_read", "content": {"event_id": message}}]
    # The marker is account data, not a receipt.
    assert receipts(later, room) is None
    assert await stored_receipts(services) == []


async def test_long_poll_is_woken_by_a_receipt(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await room_with(alice, bob)
    message = await alice.send_text(room, "read me")
    first = await alice.sync()
    task = asyncio.create_task(alice.sync(since=first["next_batch"], timeout=60_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    assert not task.done()
    await send_receipt(bob, room, message)
    result = await asyncio.wait_for(task, 10)
    assert list(receipts(result, room)[message]["m.read"]) == [bob.user_id]
    assert result["rooms"]["join"][room]["timeline"]["events"] == []


async def test_a_newly_joined_member_gets_the_rooms_receipts(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await room_with(alice, bob)
    message = await alice.send_text(room, "before carol")
    await send_receipt(bob, room, message)
    await send_receipt(bob, room, message, "m.read.private")
    first = await carol.sync()
    await carol.join(room)
    joined = await carol.sync(since=first["next_batch"])
    assert list(receipts(joined, room)) == [message]
    assert receipts(joined, room)[message].keys() == {"m.read"}
    assert list(receipts(joined, room)[message]["m.read"]) == [bob.user_id]
