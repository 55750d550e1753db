"""GET /notifications. Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3notifications"""

from __future__ import annotations

NOTIFICATIONS = "/_matrix/client/v3/notifications"


async def setup_room(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    # A two-member room: every message notifies (the default .m.rule.room_one_to_one).
    return alice, bob, room_id


async def test_notifications_list_newest_first_with_highlights(api):
    alice, bob, room_id = await setup_room(api)
    first = await alice.send_text(room_id, "hello")
    mention = await alice.send_text(room_id, "hi bob")  # bob's display name "bob": a highlight
    own = await bob.send_text(room_id, "own events never notify")
    r = await bob.get(NOTIFICATIONS)
    assert r.status == 200, r
    items = r["notifications"]
    assert [n["event"]["event_id"] for n in items] == [mention, first]
    top = items[0]
    assert top["room_id"] == room_id
    assert top["read"] is False
    assert top["ts"] == top["event"]["origin_server_ts"]
    assert "notify" in top["actions"] and {"set_tweak": "highlight"} in top["actions"]
    assert {"set_tweak": "highlight"} not in items[1]["actions"]
    assert top["event"]["content"]["body"] == "hi bob" and top["event"]["room_id"] == room_id
    assert "next_token" not in r.body

    r = await bob.get(NOTIFICATIONS, params={"only": "highlight"})
    assert [n["event"]["event_id"] for n in r["notifications"]] == [mention]
    r = await alice.get(NOTIFICATIONS)
    assert [n["event"]["event_id"] for n in r["notifications"]] == [own]


async def test_notifications_pages_and_read_marks(api):
    alice, bob, room_id = await setup_room(api)
    sent = [await alice.send_text(room_id, f"message {i}") for i in range(5)]
    r = await bob.get(NOTIFICATIONS, params={"limit": "2"})
    assert [n["event"]["event_id"] for n in r["notifications"]] == sent[4:2:-1]
    token = r["next_token"]
    r = await bob.get(NOTIFICATIONS, params={"limit": "2", "from": token})
    assert [n["event"]["event_id"] for n in r["notifications"]] == sent[2:0:-1]
    r = await bob.get(NOTIFICATIONS, params={"limit": "2", "from": r["next_token"]})
    assert [n["event"]["event_id"] for n in r["notifications"]] == sent[:1]

    # a receipt marks the earlier ones read (events evaluated before it stay listed)
    r = await bob.post(f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{sent[2]}", {})
    assert r.status == 200, r
    r = await bob.get(NOTIFICATIONS)
    listed = {n["event"]["event_id"]: n["read"] for n in r["notifications"]}
    assert listed[sent[4]] is False and listed[sent[3]] is False
    assert all(listed[e] for e in sent[:3] if e in listed)


async def test_bad_input(api):
    alice, bob, room_id = await setup_room(api)
    for params in ({"from": "abc"}, {"from": "-1"}, {"limit": "0"}, {"limit": "x"}):
        r = await bob.get(NOTIFICATIONS, params=params)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (params, r)
    r = await api.request("GET", NOTIFICATIONS)
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN", r
