"""GET /rooms/{roomId}/messages: pagination in both directions, tokens, filters, access.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3roomsroomidmessages
"""

from __future__ import annotations

from tests.client.sync_helpers import V3, all_events, bodies, ids, leave, messages, send_event, timeline
from tests.helpers import User


async def paginate(user: User, room_id: str, direction: str, limit: int, start: str | None = None):
    """Follow `end` tokens until the server says there is no more; returns (events, pages)."""
    seen: list[dict] = []
    pages = []
    token = start
    while True:
        params = {"dir": direction, "limit": limit}
        if token is not None:
            params["from"] = token
        r = await messages(user, room_id, **params)
        assert r.status == 200, r
        pages.append(r.body)
        assert len(r["chunk"]) <= limit
        seen.extend(r["chunk"])
        if "end" not in r.body:
            return seen, pages
        assert r["end"] != token
        token = r["end"]
        assert len(pages) < 50, "pagination does not terminate"


async def test_backwards_pagination_walks_the_whole_history_once(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    sent = [await alice.send_text(room, f"m{i}") for i in range(25)]
    sync = await alice.sync()
    events, pages = await paginate(alice, room, "b", 10, sync["rooms"]["join"][room]["timeline"]["prev_batch"])
    # prev_batch continues right before the sync's timeline.
    in_sync = timeline(sync, room)
    everything = list(reversed(events)) + in_sync
    assert ids(everything) == ids(await all_events(alice, room))
    assert len(set(ids(everything))) == len(everything)
    assert everything[0]["type"] == "m.room.create"
    assert [e["event_id"] for e in everything if e["type"] == "m.room.message"] == sent
    # The first page starts at `from`.
    assert pages[0]["start"] == sync["rooms"]["join"][room]["timeline"]["prev_batch"]
    for page in pages[1:]:
        assert "start" in page


async def test_backwards_from_now_with_limit_ten(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    sent = [await alice.send_text(room, f"m{i}") for i in range(25)]
    events, pages = await paginate(alice, room, "b", 10)
    assert [len(p["chunk"]) for p in pages[:3]] == [10, 10, 10]
    assert ids(events)[:25] == list(reversed(sent))
    assert events[-1]["type"] == "m.room.create"
    assert ids(events) == list(reversed(ids(await all_events(alice, room))))
    # Events carry their room id here.
    assert all(e["room_id"] == room for e in events)


async def test_forwards_pagination_walks_the_whole_history_once(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    sent = [await alice.send_text(room, f"m{i}") for i in range(25)]
    events, _ = await paginate(alice, room, "f", 7)
    assert events[0]["type"] == "m.room.create"
    assert [e["event_id"] for e in events if e["type"] == "m.room.message"] == sent
    assert len(set(ids(events))) == len(events)


async def test_no_end_when_the_last_page_is_exactly_full(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    await alice.send_text(room, "only")
    total = len(await all_events(alice, room))
    r = await messages(alice, room, dir="b", limit=total)
    assert len(r["chunk"]) == total
    assert r["chunk"][-1]["type"] == "m.room.create"
    assert "end" not in r.body
    r = await messages(alice, room, dir="f", limit=total)
    assert len(r["chunk"]) == total
    assert "end" not in r.body
    # One short of everything: there is more, so `end` is given and leads to the rest.
    r = await messages(alice, room, dir="b", limit=total - 1)
    assert "end" in r.body
    rest = await messages(alice, room, dir="b", **{"from": r["end"]}, limit=total)
    assert [e["type"] for e in rest["chunk"]] == ["m.room.create"]
    assert "end" not in rest.body


async def test_from_and_to_tokens(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    before = await alice.sync()
    sent = [await alice.send_text(room, f"m{i}") for i in range(6)]
    after = await alice.sync(since=before["next_batch"])
    # Everything between two sync tokens, either way round.
    r = await messages(alice, room, dir="f", **{"from": before["next_batch"]}, to=after["next_batch"], limit=100)
    assert ids(r["chunk"]) == sent
    assert r["start"] == before["next_batch"]
    r = await messages(alice, room, dir="b", **{"from": after["next_batch"]}, to=before["next_batch"], limit=100)
    assert ids(r["chunk"]) == list(reversed(sent))
    # With a limit, the end token resumes exactly where the page stopped.
    r = await messages(alice, room, dir="f", **{"from": before["next_batch"]}, limit=4)
    assert ids(r["chunk"]) == sent[:4]
    r2 = await messages(alice, room, dir="f", **{"from": r["end"]}, limit=4)
    assert ids(r2["chunk"]) == sent[4:]
    # Forwards from the newest point there is nothing.
    r = await messages(alice, room, dir="f", **{"from": after["next_batch"]})
    assert r["chunk"] == [] and "end" not in r.body


async def test_limit(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    sent = [await alice.send_text(room, f"m{i}") for i in range(4)]
    r = await messages(alice, room, dir="b", limit=3)
    assert ids(r["chunk"]) == list(reversed(sent))[:3]
    # The default limit is 10.
    for i in range(10):
        await alice.send_text(room, f"n{i}")
    r = await messages(alice, room, dir="b")
    assert len(r["chunk"]) == 10
    # A filter's limit applies too.
    r = await messages(alice, room, {"limit": 2}, dir="b", limit=5)
    assert len(r["chunk"]) == 2


async def test_filter_param(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    a = await alice.send_text(room, "from alice")
    b = await bob.send_text(room, "from bob")
    c = await send_event(alice, room, "com.example.custom", {}, "c1")
    r = await messages(alice, room, {"types": ["m.room.message"]}, dir="b")
    assert ids(r["chunk"]) == [b, a]
    r = await messages(alice, room, {"senders": [bob.user_id]}, dir="b")
    assert ids(r["chunk"])[0] == b
    assert {e["sender"] for e in r["chunk"]} == {bob.user_id}
    r = await messages(alice, room, {"not_types": ["m.room.*"]}, dir="b")
    assert ids(r["chunk"]) == [c]
    r = await messages(alice, room, {"types": ["m.room.message"], "not_senders": [alice.user_id]}, dir="f")
    assert ids(r["chunk"]) == [b]


async def test_lazy_load_members_returns_the_senders_state(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await alice.create_room(preset="public_chat")
    await carol.join(room)
    await alice.send_text(room, "alice speaks")
    await bob.join(room)
    await bob.send_text(room, "bob speaks")
    r = await messages(carol, room, {"lazy_load_members": True, "types": ["m.room.message"]}, dir="b")
    assert bodies(r["chunk"]) == ["bob speaks", "alice speaks"]
    members = {e["state_key"]: e for e in r["state"] if e["type"] == "m.room.member"}
    assert {alice.user_id, bob.user_id} <= members.keys()
    assert members[bob.user_id]["content"]["membership"] == "join"
    assert all(e["type"] == "m.room.member" for e in r["state"])
    # Without lazy loading there is no state.
    r = await messages(carol, room, {"types": ["m.room.message"]}, dir="b")
    assert "state" not in r.body or r["state"] == []


async def test_bad_parameters(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    await alice.send_text(room, "x")
    r = await messages(alice, room)
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    r = await messages(alice, room, dir="up")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    for token in ["garbage", "s-5", "s", "s" + "9" * 40, "t1_2"]:
        r = await messages(alice, room, dir="b", **{"from": token})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (token, r)
        r = await messages(alice, room, dir="b", to=token)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (token, r)
    for limit in ["ten", "-1", "1e3"]:
        r = await messages(alice, room, dir="b", limit=limit)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (limit, r)
    for raw in ["{bad", "[]", '{"limit": "x"}', '{"types": "m.room.message"}']:
        r = await alice.get(f"{V3}/rooms/{room}/messages", params={"dir": "b", "filter": raw})
        assert r.status == 400 and r.errcode in ("M_INVALID_PARAM", "M_BAD_JSON", "M_NOT_JSON"), (raw, r)
    r = await messages(alice, "not-a-room-id", dir="b")
    assert r.status == 400


async def test_non_members_are_forbidden(api):
    alice = await api.register("alice")
    eve = await api.register("eve")
    room = await alice.create_room()
    await alice.send_text(room, "private")
    r = await messages(eve, room, dir="b")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    # An unknown room looks the same to an outsider.
    r = await messages(eve, "!nowhere:test.local", dir="b")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    # An invited user is not yet a member either.
    await alice.invite(room, eve.user_id)
    r = await messages(eve, room, dir="b")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.request("GET", f"{V3}/rooms/{room}/messages", params={"dir": "b"})
    assert r.status == 401


async def test_left_member_sees_only_up_to_their_leave(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    said = await alice.send_text(room, "while bob is here")
    await leave(bob, room)
    later = await alice.send_text(room, "after bob left")
    r = await messages(bob, room, dir="b")
    assert r.status == 200
    chunk = r["chunk"]
    assert chunk[0]["type"] == "m.room.member" and chunk[0]["state_key"] == bob.user_id
    assert chunk[0]["content"]["membership"] == "leave"
    assert said in ids(chunk) and later not in ids(chunk)
    # Also forwards, and from a token taken after the leave.
    r = await messages(bob, room, dir="f", limit=100)
    assert later not in ids(r["chunk"])
    sync = await alice.sync()
    r = await messages(bob, room, dir="b", **{"from": sync["next_batch"]})
    assert later not in ids(r["chunk"]) and said in ids(r["chunk"])
    # Kicked and banned users likewise keep read access up to the kick or ban.
    carol = await api.register("carol")
    await carol.join(room)
    r = await alice.post(f"{V3}/rooms/{room}/ban", {"user_id": carol.user_id})
    assert r.status == 200
    await alice.send_text(room, "after the ban")
    r = await messages(carol, room, dir="b")
    assert r.status == 200
    assert r["chunk"][0]["content"]["membership"] == "ban"
    assert "after the ban" not in bodies(r["chunk"])


async def test_redacted_events_are_served_redacted(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    target = await alice.send_text(room, "oops")
    r = await alice.put(f"{V3}/rooms/{room}/redact/{target}/r1", {"reason": "typo"})
    assert r.status == 200
    r = await messages(alice, room, dir="b", limit=2)
    redacted = next(e for e in r["chunk"] if e["event_id"] == target)
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["event_id"] == ids(r["chunk"])[0]
