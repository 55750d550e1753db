"""Unread notification counts in /sync, from push rules and read receipts.

Spec: https://spec.matrix.org/v1.19/client-server-api/#receiving-notifications
"""

from __future__ import annotations

import asyncio
import json

from tests.client.sync_helpers import send_event
from tests.helpers import User

V3 = "/_matrix/client/v3"
THREAD_FILTER = json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}})


async def counts(user: User, room_id: str, since: str | None = None, **params) -> dict:
    r = await user.sync(since, **params)
    return r["rooms"]["join"][room_id]["unread_notifications"]


async def receipt(user: User, room_id: str, event_id: str, receipt_type: str = "m.read", **body) -> None:
    r = await user.post(f"{V3}/rooms/{room_id}/receipt/{receipt_type}/{event_id}", body)
    assert r.status == 200, r


async def group_room(api, *names: str) -> tuple[User, list[User], str]:
    """A public room of alice with the others joined (3 or more members)."""
    alice = await api.register("alice")
    others = [await api.register(n) for n in names]
    room_id = await alice.create_room(preset="public_chat")
    for user in others:
        await user.join(room_id)
    return alice, others, room_id


async def test_messages_notify_and_receipts_clear_them(api):
    alice, (bob, carol), room_id = await group_room(api, "bob", "carol")
    assert await counts(alice, room_id) == {"notification_count": 0, "highlight_count": 0}
    await bob.send_text(room_id, "hello")
    await carol.send_text(room_id, "hi all")
    last = await bob.send_text(room_id, "dinner at 7")
    # Alice's own messages never count.
    await alice.send_text(room_id, "ok")
    assert await counts(alice, room_id) == {"notification_count": 3, "highlight_count": 0}
    # Bob's count has carol's and alice's messages (the joins do not notify).
    assert await counts(bob, room_id) == {"notification_count": 2, "highlight_count": 0}
    since = (await alice.sync())["next_batch"]
    await receipt(alice, room_id, last)
    # The receipt brings the room into the incremental sync with the new count.
    assert await counts(alice, room_id, since) == {"notification_count": 0, "highlight_count": 0}
    await bob.send_text(room_id, "and dessert")
    assert await counts(alice, room_id) == {"notification_count": 1, "highlight_count": 0}


async def test_private_receipt_clears_too_and_the_later_receipt_wins(api):
    alice, (bob, _carol), room_id = await group_room(api, "bob", "carol")
    first = await bob.send_text(room_id, "one")
    second = await bob.send_text(room_id, "two")
    await bob.send_text(room_id, "three")
    await receipt(alice, room_id, second, "m.read.private")
    assert (await counts(alice, room_id))["notification_count"] == 1
    # A public receipt behind the private one changes nothing.
    await receipt(alice, room_id, first)
    assert (await counts(alice, room_id))["notification_count"] == 1


async def test_mentions_highlight(api):
    alice, (bob, _carol), room_id = await group_room(api, "bob", "carol")
    await send_event(bob, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "Alice, look", "m.mentions": {"user_ids": [alice.user_id]},
    }, "m1")
    # Without m.mentions, the localpart in the body highlights (the legacy rule).
    await bob.send_text(room_id, "where is alice?")
    # With m.mentions naming someone else, it does not.
    await send_event(bob, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "alice's brother", "m.mentions": {"user_ids": [bob.user_id]},
    }, "m2")
    assert await counts(alice, room_id) == {"notification_count": 3, "highlight_count": 2}


async def test_room_mentions_need_power(api):
    alice, (bob, _carol), room_id = await group_room(api, "bob", "carol")
    body = {"msgtype": "m.text", "body": "@room dinner!", "m.mentions": {"room": True}}
    await send_event(bob, room_id, "m.room.message", body, "r1")
    assert await counts(bob, room_id) == {"notification_count": 0, "highlight_count": 0}
    assert await counts(alice, room_id) == {"notification_count": 1, "highlight_count": 0}
    # Alice (power 100) may notify the room.
    await send_event(alice, room_id, "m.room.message", body, "r2")
    assert await counts(bob, room_id) == {"notification_count": 1, "highlight_count": 1}


async def test_push_rules_decide(api):
    alice, (bob, _carol), room_id = await group_room(api, "bob", "carol")
    await send_event(bob, room_id, "m.room.message", {"msgtype": "m.notice", "body": "bot says hi"}, "n1")
    cake = await alice.send_text(room_id, "cake?")
    await send_event(bob, room_id, "m.reaction", {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": cake, "key": "👍"}}, "n2")
    await send_event(bob, room_id, "org.example.custom", {"body": "hello"}, "n3")
    assert await counts(alice, room_id) == {"notification_count": 0, "highlight_count": 0}
    # A room rule with no actions mutes the room.
    r = await alice.put(f"{V3}/pushrules/global/room/{room_id}", {"actions": []})
    assert r.status == 200
    await bob.send_text(room_id, "muted")
    assert (await counts(alice, room_id))["notification_count"] == 0
    r = await alice.delete(f"{V3}/pushrules/global/room/{room_id}")
    assert r.status == 200
    await bob.send_text(room_id, "loud")
    assert (await counts(alice, room_id))["notification_count"] == 1
    # The master rule silences everything that follows.
    r = await alice.put(f"{V3}/pushrules/global/override/.m.rule.master/enabled", {"enabled": True})
    assert r.status == 200
    await bob.send_text(room_id, "silenced, alice")
    assert (await counts(alice, room_id)) == {"notification_count": 1, "highlight_count": 0}


async def test_direct_rooms_and_invites(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], is_direct=True)
    await bob.join(room_id)
    await send_event(alice, room_id, "m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"},
                     "e1")
    await alice.send_text(room_id, "plain")
    assert await counts(bob, room_id) == {"notification_count": 2, "highlight_count": 0}


async def test_events_before_joining_do_not_count(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    for i in range(3):
        await alice.send_text(room_id, f"before {i}")
    await bob.join(room_id)
    assert await counts(bob, room_id) == {"notification_count": 0, "highlight_count": 0}
    await alice.send_text(room_id, "after")
    assert await counts(bob, room_id) == {"notification_count": 1, "highlight_count": 0}


async def test_counts_start_again_after_leaving_and_rejoining(api):
    alice, (bob, _carol), room_id = await group_room(api, "bob", "carol")
    await alice.send_text(room_id, "one")
    await alice.send_text(room_id, "two")
    assert (await counts(bob, room_id))["notification_count"] == 2
    r = await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    assert r.status == 200
    await alice.send_text(room_id, "while bob is away")
    await bob.join(room_id)
    # Neither what bob left unread nor what came while he was away counts.
    assert await counts(bob, room_id) == {"notification_count": 0, "highlight_count": 0}
    await alice.send_text(room_id, "welcome back")
    assert (await counts(bob, room_id))["notification_count"] == 1


async def test_thread_counts(api):
    alice, (bob, _carol), room_id = await group_room(api, "bob", "carol")
    root = await bob.send_text(room_id, "root")
    in_thread = []
    for i in range(2):
        in_thread.append(await send_event(bob, room_id, "m.room.message", {
            "msgtype": "m.text", "body": f"reply {i}",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        }, f"t{i}"))
    # Without the filter option, everything is counted together.
    assert await counts(alice, room_id) == {"notification_count": 3, "highlight_count": 0}
    r = await alice.sync(filter=THREAD_FILTER)
    section = r["rooms"]["join"][room_id]
    assert section["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert section["unread_thread_notifications"] == {root: {"notification_count": 2, "highlight_count": 0}}
    # A receipt in the thread clears the thread only; one for the main timeline, the main timeline only.
    await receipt(alice, room_id, in_thread[-1], thread_id=root)
    section = (await alice.sync(filter=THREAD_FILTER))["rooms"]["join"][room_id]
    assert section["unread_notifications"]["notification_count"] == 1
    assert section["unread_thread_notifications"] == {}
    await receipt(alice, room_id, root, thread_id="main")
    assert (await counts(alice, room_id)) == {"notification_count": 0, "highlight_count": 0}
    # An unthreaded receipt clears every thread.
    await send_event(bob, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "more", "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    }, "t9")
    last = await bob.send_text(room_id, "main again")
    assert (await counts(alice, room_id))["notification_count"] == 2
    await receipt(alice, room_id, last)
    assert (await counts(alice, room_id))["notification_count"] == 0


async def test_left_rooms_carry_no_counts(api):
    alice, (bob, _carol), room_id = await group_room(api, "bob", "carol")
    await alice.send_text(room_id, "bye")
    since = (await bob.sync())["next_batch"]
    r = await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    assert r.status == 200
    left = (await bob.sync(since))["rooms"]["leave"][room_id]
    assert "unread_notifications" not in left


async def test_the_counts_do_not_wait_for_recording_what_evaluation_found(api, services):
    # The recording is derived data, written after the response: a sync answers while it
    # cannot be written, and the user's next count waits for it rather than evaluate again.
    alice, (bob,), room_id = await group_room(api, "bob")
    since = (await bob.sync())["next_batch"]
    await alice.send_text(room_id, "one")
    async with services.db.transaction() as blocker:
        await blocker.execute("LOCK TABLE push_actions_evaluated IN EXCLUSIVE MODE")
        # The sync would hang here (until the lock goes, below) if it waited for the write.
        r = await asyncio.wait_for(bob.sync(since), 30)
        assert r["rooms"]["join"][room_id]["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
        next_count = asyncio.create_task(services.notifications.unread_counts_many(
            bob.user_id, {room_id: services.sync.current_token().events}))
        await asyncio.sleep(0.2)
        assert not next_count.done()  # it waits for the recording under way
    counted = await asyncio.wait_for(next_count, 30)
    assert counted[room_id].main == {"notification_count": 1, "highlight_count": 0}
    assert await services.notifications.store.evaluated_up_to(bob.user_id, room_id) == \
        services.sync.current_token().events
    await alice.send_text(room_id, "two")
    assert await counts(bob, room_id, r["next_batch"]) == {"notification_count": 2, "highlight_count": 0}


async def test_a_rule_on_the_member_count_sees_the_room_as_it_is(api, services):
    """A push rule on room_member_count: the count is that of the room's joined members
    when the event is evaluated, whether the pipeline has the members in memory (they
    are, after a send woke them) or the read counts them."""
    alice, (bob,), room_id = await group_room(api, "bob")
    r = await alice.put("/_matrix/client/v3/pushrules/global/override/quiet.pairs", {
        "conditions": [{"kind": "room_member_count", "is": "2"}], "actions": []})
    assert r.status == 200, r
    await bob.send_text(room_id, "just us two")
    assert services.pipeline.cached_joined_members(room_id) == {alice.user_id, bob.user_id}
    assert await counts(alice, room_id) == {"notification_count": 0, "highlight_count": 0}
    carol = await api.register("carol")
    await carol.join(room_id)
    await bob.send_text(room_id, "three of us now")
    assert len(services.pipeline.cached_joined_members(room_id)) == 3
    # What the read is handed: the count, so it need not count.
    assert (await services.notifications.unread_request(alice.user_id, {room_id: 0})).member_counts == {room_id: 3}
    assert await counts(alice, room_id) == {"notification_count": 1, "highlight_count": 0}
    # Carol leaves, and both messages are evaluated again with nothing in memory: the read
    # counts two members, and neither notifies now.
    r = await carol.post(f"{V3}/rooms/{room_id}/leave", {})
    assert r.status == 200, r
    await services.db.execute("DELETE FROM event_push_actions WHERE user_id = $1", alice.user_id)
    await services.db.execute("DELETE FROM push_actions_evaluated WHERE user_id = $1", alice.user_id)
    services.pipeline.forget_rooms()
    assert services.pipeline.cached_joined_members(room_id) is None
    assert await counts(alice, room_id) == {"notification_count": 0, "highlight_count": 0}
