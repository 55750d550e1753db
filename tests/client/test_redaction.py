"""PUT /rooms/{roomId}/redact/{eventId}/{txnId} and how redacted events are served.

Spec: https://spec.matrix.org/v1.19/client-server-api/#redactions
"""

from __future__ import annotations

import pytest

V3 = "/_matrix/client/v3"


def redact_path(room_id: str, event_id: str, txn_id: str) -> str:
    return f"{V3}/rooms/{room_id}/redact/{event_id}/{txn_id}"


async def redact(user, room_id: str, event_id: str, txn_id: str, reason: str | None = None) -> str:
    body = {"reason": reason} if reason is not None else {}
    r = await user.put(redact_path(room_id, event_id, txn_id), body)
    assert r.status == 200, r
    return r["event_id"]


async def count_events(services, room_id: str, event_type: str) -> int:
    return await services.db.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND type = $2", room_id, event_type
    )


def assert_redacted(event: dict, redaction_id: str, sender: str, reason: str | None) -> None:
    assert event["content"] == {}, event
    because = event["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction_id
    assert because["type"] == "m.room.redaction"
    assert because["sender"] == sender
    assert because["content"].get("reason") == reason


async def test_redact_own_event_everywhere(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    target = await alice.send_text(room_id, "oops")
    redaction_id = await redact(alice, room_id, target, "r1", reason="typo")
    assert redaction_id.startswith("$") and redaction_id != target

    r = await alice.get(f"{V3}/rooms/{room_id}/event/{target}")
    assert r.status == 200
    assert r["type"] == "m.room.message" and r["sender"] == alice.user_id
    assert_redacted(r.body, redaction_id, alice.user_id, "typo")

    r = await alice.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b", "limit": "5"})
    by_id = {e["event_id"]: e for e in r["chunk"]}
    assert_redacted(by_id[target], redaction_id, alice.user_id, "typo")
    assert by_id[redaction_id]["type"] == "m.room.redaction"

    timeline = (await alice.sync())["rooms"]["join"][room_id]["timeline"]["events"]
    by_id = {e["event_id"]: e for e in timeline}
    assert_redacted(by_id[target], redaction_id, alice.user_id, "typo")


async def test_redaction_reaches_incremental_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    target = await alice.send_text(room_id, "secret")
    first = await bob.sync()
    redaction_id = await redact(alice, room_id, target, "r1")
    second = await bob.sync(since=first["next_batch"])
    timeline = second["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in timeline] == [redaction_id]
    assert timeline[0]["redacts"] == target
    # Fetched again, the original comes back redacted for bob too.
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{target}")
    assert_redacted(r.body, redaction_id, alice.user_id, None)


async def test_redacting_others_events_needs_redact_power(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    alices = await alice.send_text(room_id, "from alice")
    bobs = await bob.send_text(room_id, "from bob")

    r = await bob.put(redact_path(room_id, alices, "r1"), {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await count_events(services, room_id, "m.room.redaction") == 0
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{alices}")
    assert r["content"]["body"] == "from alice"

    # His own message bob may redact; alice (a creator) may redact anyone's.
    await redact(bob, room_id, bobs, "r2")
    other = await bob.send_text(room_id, "another")
    redaction_id = await redact(alice, room_id, other, "r3", reason="moderation")
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{other}")
    assert_redacted(r.body, redaction_id, alice.user_id, "moderation")


async def test_redact_power_level_can_be_granted(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(
        preset="public_chat", power_level_content_override={"users": {bob.user_id: 50}},
    )
    await bob.join(room_id)
    target = await alice.send_text(room_id, "moderate me")
    await redact(bob, room_id, target, "r1")


async def test_non_member_cannot_redact(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    target = await alice.send_text(room_id, "hi")
    r = await bob.put(redact_path(room_id, target, "r1"), {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await count_events(services, room_id, "m.room.redaction") == 0


async def test_redaction_txn_id_is_idempotent(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    target = await alice.send_text(room_id, "once")
    first = await redact(alice, room_id, target, "same")
    second = await redact(alice, room_id, target, "same")
    assert first == second
    assert await count_events(services, room_id, "m.room.redaction") == 1


async def test_redaction_body_is_checked(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    target = await alice.send_text(room_id, "x")
    r = await alice.put(redact_path(room_id, target, "r1"), {"reason": 5})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    assert await count_events(services, room_id, "m.room.redaction") == 0


@pytest.mark.parametrize("version", ["11", "12"])
async def test_v11_and_later_put_redacts_in_content(api, services, version):
    alice = await api.register("alice")
    room_id = await alice.create_room(room_version=version)
    target = await alice.send_text(room_id, "x")
    redaction_id = await redact(alice, room_id, target, "r1", reason="why")
    stored = await services.events.get_event(redaction_id)
    assert stored.json["content"] == {"redacts": target, "reason": "why"}
    assert "redacts" not in stored.json
    r = await alice.get(f"{V3}/rooms/{room_id}/event/{redaction_id}")
    assert r["content"]["redacts"] == target
    # Served at the top level too, for clients written before v11.
    assert r["redacts"] == target


async def test_before_v11_redacts_is_top_level(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room(room_version="10")
    target = await alice.send_text(room_id, "x")
    redaction_id = await redact(alice, room_id, target, "r1")
    stored = await services.events.get_event(redaction_id)
    assert stored.json["redacts"] == target
    assert "redacts" not in stored.json["content"]
    r = await alice.get(f"{V3}/rooms/{room_id}/event/{redaction_id}")
    assert r["redacts"] == target
    r = await alice.get(f"{V3}/rooms/{room_id}/event/{target}")
    assert_redacted(r.body, redaction_id, alice.user_id, None)


async def test_redacted_state_event_keeps_what_the_algorithm_keeps(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat", topic="Secret topic")
    r = await bob.put(f"{V3}/profile/{bob.user_id}/displayname", {"displayname": "Bobby"})
    assert r.status == 200
    await bob.join(room_id)
    topic = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.topic", params={"format": "event"})
    member = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}",
                             params={"format": "event"})
    await redact(alice, room_id, topic["event_id"], "r1")
    await redact(alice, room_id, member["event_id"], "r2")

    # The state is still there, served redacted.
    r = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.topic")
    assert r.status == 200 and r.body == {}
    r = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}")
    assert r.body == {"membership": "join"}
    r = await alice.get(f"{V3}/rooms/{room_id}/state")
    by_key = {(e["type"], e["state_key"]): e for e in r.body}
    assert by_key[("m.room.topic", "")]["content"] == {}
    assert "redacted_because" in by_key[("m.room.topic", "")]["unsigned"]
    assert by_key[("m.room.member", bob.user_id)]["content"] == {"membership": "join"}
    # Bob is still joined: redaction does not change membership.
    await bob.send_text(room_id, "still here")


async def test_redacting_an_event_of_another_room(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_a = await alice.create_room(preset="public_chat")
    room_b = await bob.create_room()
    target = await bob.send_text(room_b, "in b")
    await bob.join(room_a)
    # Bob redacts "his" event through a room where it is not: refused, and it stays intact.
    r = await bob.put(redact_path(room_a, target, "r1"), {})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await bob.put(f"{V3}/rooms/{room_a}/send/m.room.redaction/t1", {"redacts": target})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    assert await count_events(services, room_a, "m.room.redaction") == 0
    r = await bob.get(f"{V3}/rooms/{room_b}/event/{target}")
    assert r["content"]["body"] == "in b"
    assert "redacted_because" not in r["unsigned"]


async def test_redaction_sent_through_send_is_checked_like_redact(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    target = await alice.send_text(room_id, "from alice")
    r = await bob.put(f"{V3}/rooms/{room_id}/send/m.room.redaction/t1", {"redacts": target})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await count_events(services, room_id, "m.room.redaction") == 0
    r = await alice.get(f"{V3}/rooms/{room_id}/event/{target}")
    assert r["content"]["body"] == "from alice"
    # The sender's own event, through /send, is fine.
    own = await bob.send_text(room_id, "mine")
    r = await bob.put(f"{V3}/rooms/{room_id}/send/m.room.redaction/t2", {"redacts": own})
    assert r.status == 200, r
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{own}")
    assert r["content"] == {} and r["unsigned"]["redacted_because"]["event_id"]


async def test_redacting_unknown_event_needs_redact_power(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    r = await bob.put(redact_path(room_id, "$unknown", "r1"), {})
    assert r.status in (403, 404) and r.errcode in ("M_FORBIDDEN", "M_NOT_FOUND"), r
    assert await count_events(services, room_id, "m.room.redaction") == 0
