"""Simplified sliding sync (MSC4186), with the request shapes Element X sends.

Spec: https://github.com/matrix-org/matrix-spec-proposals/pull/4186
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.client.sync_helpers import V3, answered_behind_a_lock, send_event, send_state, until_waiting
from tests.helpers import Response, User, count_queries, record_statements

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def ss(user: User, body: dict[str, Any], pos: str | None = None, timeout: int = 0,
             expect: int = 200) -> Response:
    params = {"timeout": str(timeout)}
    if pos is not None:
        params["pos"] = pos
    r = await user.request("POST", SS, body, params=params)
    assert r.status == expect, r
    return r


def all_rooms(end: int = 19, timeline_limit: int = 1, required_state: Any = None, **filters: Any) -> dict:
    body: dict[str, Any] = {
        "ranges": [[0, end]],
        "timeline_limit": timeline_limit,
        "required_state": required_state if required_state is not None else [["m.room.name", ""]],
    }
    if filters:
        body["filters"] = filters
    return body


async def alice_and_bob_in_a_room(api: Any) -> tuple[User, User, str]:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    return alice, bob, room


def bodies(events: list[dict]) -> list[str]:
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


async def test_versions_advertise_simplified_sliding_sync(api):
    r = await api.request("GET", "/_matrix/client/versions")
    assert r["unstable_features"]["org.matrix.simplified_msc3575"] is True


async def test_rooms_ordered_by_recency_and_ranges(api):
    alice = await api.register("alice")
    rooms = [await alice.create_room(name=f"r{i}") for i in range(4)]
    await alice.send_text(rooms[1], "bump r1")
    r = await ss(alice, {"lists": {"all": all_rooms()}})
    assert r["lists"]["all"]["count"] == 4
    assert list(r["rooms"]) == [rooms[1], rooms[3], rooms[2], rooms[0]]
    stamps = [r["rooms"][room]["bump_stamp"] for room in r["rooms"]]
    assert stamps == sorted(stamps, reverse=True)
    section = r["rooms"][rooms[1]]
    assert section["initial"] is True
    assert section["name"] == "r1"
    assert bodies(section["timeline"]) == ["bump r1"]
    assert section["limited"] is True
    assert section["joined_count"] == 1 and section["invited_count"] == 0
    assert {"notification_count", "highlight_count", "prev_batch", "num_live"} <= section.keys()
    # A window of two: only the two most recent rooms get sections, the count is all of them.
    r = await ss(alice, {"lists": {"all": all_rooms(end=1)}})
    assert r["lists"]["all"]["count"] == 4
    assert list(r["rooms"]) == [rooms[1], rooms[3]]


async def test_a_state_event_does_not_bump_but_a_message_does(api):
    alice = await api.register("alice")
    first = await alice.create_room()
    second = await alice.create_room()
    await send_state(alice, first, "m.room.topic", {"topic": "no bump"})
    r = await ss(alice, {"lists": {"all": all_rooms()}})
    assert list(r["rooms"]) == [second, first]
    await alice.send_text(first, "bump")
    r = await ss(alice, {"lists": {"all": all_rooms()}})
    assert list(r["rooms"]) == [first, second]


async def test_required_state_wildcards_lazy_and_me(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await alice.create_room(preset="public_chat", name="Room", topic="Topic")
    await bob.join(room)
    await carol.join(room)
    await bob.send_text(room, "from bob")

    async def required(pairs: list[list[str]], limit: int = 1) -> set[tuple[str, str]]:
        r = await ss(alice, {"room_subscriptions": {room: {"required_state": pairs, "timeline_limit": limit}}})
        return {(e["type"], e["state_key"]) for e in r["rooms"][room]["required_state"]}

    everything = await required([["*", "*"]])
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""),
            ("m.room.member", alice.user_id), ("m.room.member", carol.user_id)} <= everything
    assert await required([["m.room.member", "*"]]) == {
        ("m.room.member", u.user_id) for u in (alice, bob, carol)}
    # $LAZY: the members who sent the timeline (bob only).
    assert await required([["m.room.member", "$LAZY"]]) == {("m.room.member", bob.user_id)}
    assert await required([["m.room.member", "$ME"], ["m.room.topic", ""]]) == {
        ("m.room.member", alice.user_id), ("m.room.topic", "")}
    assert await required([["*", ""]]) >= {("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", "")}
    assert await required([["m.room.nonexistent", ""]]) == set()


async def test_timeline_limit(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    for i in range(5):
        await alice.send_text(room, f"m{i}")
    r = await ss(alice, {"room_subscriptions": {room: {"required_state": [], "timeline_limit": 3}}})
    section = r["rooms"][room]
    assert bodies(section["timeline"]) == ["m2", "m3", "m4"]
    assert section["limited"] is True
    # The prev_batch paginates on with /messages.
    older = await alice.get(f"/_matrix/client/v3/rooms/{room}/messages",
                            params={"dir": "b", "from": section["prev_batch"], "limit": "2"})
    assert [e["content"]["body"] for e in older["chunk"]] == ["m1", "m0"]
    r = await ss(alice, {"room_subscriptions": {room: {"required_state": [], "timeline_limit": 100}}})
    assert r["rooms"][room]["limited"] is False
    assert r["rooms"][room]["timeline"][0]["type"] == "m.room.create"


async def test_room_subscription_outside_lists_and_of_a_stranger_room(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    rooms = [await alice.create_room() for _ in range(3)]
    foreign = await bob.create_room()
    r = await ss(alice, {
        "lists": {"all": all_rooms(end=0)},
        "room_subscriptions": {rooms[0]: {"required_state": [["m.room.create", ""]], "timeline_limit": 1},
                               foreign: {"required_state": [], "timeline_limit": 1}},
    })
    assert set(r["rooms"]) == {rooms[2], rooms[0]}
    assert [e["type"] for e in r["rooms"][rooms[0]]["required_state"]] == ["m.room.create"]


async def test_incremental_sends_only_changed_rooms(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    quiet = await alice.create_room(name="quiet")
    busy = await alice.create_room(preset="public_chat", name="busy")
    await bob.join(busy)
    body = {"conn_id": "room-list", "lists": {"all": all_rooms(timeline_limit=5,
                                                             required_state=[["m.room.name", ""],
                                                                             ["m.room.member", "$LAZY"]])}}
    first = await ss(alice, body)
    assert set(first["rooms"]) == {quiet, busy}
    # Nothing happened: nothing is sent.
    again = await ss(alice, body, pos=first["pos"])
    assert again["rooms"] == {}
    assert again["lists"]["all"]["count"] == 2
    await bob.send_text(busy, "hello")
    later = await ss(alice, body, pos=again["pos"])
    assert list(later["rooms"]) == [busy]
    section = later["rooms"][busy]
    assert "initial" not in section
    assert bodies(section["timeline"]) == ["hello"]
    assert section["num_live"] == 1
    assert section["limited"] is False
    # bob's membership was sent with the first response ($LAZY remembered): not again.
    assert section["required_state"] == []
    await bob.send_text(busy, "again")
    r = await ss(alice, body, pos=later["pos"])
    assert r["rooms"][busy]["required_state"] == []
    # The previous position still works (a client whose response got lost retries it).
    retry = await ss(alice, body, pos=later["pos"])
    assert bodies(retry["rooms"][busy]["timeline"]) == ["again"]
    # A changed name is sent as a state change and as the room's name.
    await send_state(alice, quiet, "m.room.name", {"name": "renamed"})
    r = await ss(alice, body, pos=retry["pos"])
    assert r["rooms"][quiet]["name"] == "renamed"
    assert [e["content"]["name"] for e in r["rooms"][quiet]["required_state"]] == ["renamed"]
    assert list(r["rooms"]) == [quiet]


async def test_unknown_or_malformed_pos_is_m_unknown_pos(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    await alice.create_room()
    for pos in ("0123456789abcdef_1", "garbage", ""):
        r = await ss(alice, {"lists": {"all": all_rooms()}}, pos=pos, expect=400)
        assert r.errcode == "M_UNKNOWN_POS"
    first = await ss(alice, {"lists": {"all": all_rooms()}})
    # Another connection, or another user, cannot use this position.
    r = await ss(alice, {"conn_id": "other", "lists": {}}, pos=first["pos"], expect=400)
    assert r.errcode == "M_UNKNOWN_POS"
    r = await ss(bob, {}, pos=first["pos"], expect=400)
    assert r.errcode == "M_UNKNOWN_POS"
    # A connection state lost (e.g. a restart: it lives in memory) reads the same.
    api.services.sliding_sync._connections.clear()
    r = await ss(alice, {"lists": {"all": all_rooms()}}, pos=first["pos"], expect=400)
    assert r.errcode == "M_UNKNOWN_POS"


async def test_filters_is_dm_is_invite_and_room_types(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    group = await alice.create_room(name="group")
    dm = await alice.create_room(is_direct=True, invite=[bob.user_id])
    space = await alice.create_room(creation_content={"type": "m.space"})
    invited = await bob.create_room(name="come in")
    await bob.invite(invited, alice.user_id)
    r = await alice.put(f"/_matrix/client/v3/user/{alice.user_id}/account_data/m.direct", {bob.user_id: [dm]})
    assert r.status == 200
    r = await ss(alice, {"lists": {
        "dms": all_rooms(is_dm=True),
        "invites": all_rooms(is_invite=True),
        "rooms": all_rooms(is_dm=False, is_invite=False, not_room_types=["m.space"]),
        "spaces": all_rooms(room_types=["m.space"]),
        "untyped": all_rooms(room_types=[None]),
    }})
    assert r["lists"]["dms"]["count"] == 1
    assert r["lists"]["invites"]["count"] == 1
    assert r["lists"]["rooms"]["count"] == 1
    assert r["lists"]["spaces"]["count"] == 1
    assert r["lists"]["untyped"]["count"] == 3
    invite = r["rooms"][invited]
    assert invite["initial"] is True and "timeline" not in invite and "required_state" not in invite
    assert any(e["type"] == "m.room.member" and e["state_key"] == alice.user_id for e in invite["invite_state"])
    assert invite["name"] == "come in"
    assert {group, dm, space} <= set(r["rooms"])
    assert r["rooms"][dm]["is_dm"] is True and "is_dm" not in r["rooms"][group]
    # Events come without their room_id, as Synapse serves them.
    assert all("room_id" not in e for e in r["rooms"][group]["timeline"] + r["rooms"][group]["required_state"])


async def test_m_direct_is_read_again_only_once_account_data_moved(api):
    alice = await api.register("alice")
    room = await alice.create_room(name="soon a DM")
    store = api.services.sliding_sync.account_data
    reads: list[str] = []
    read = store.get

    async def counted_get(user_id: str, room_id: str, event_type: str) -> Any:
        if event_type == "m.direct":
            reads.append(user_id)
        return await read(user_id, room_id, event_type)

    store.get = counted_get
    body = {"lists": {"dms": all_rooms(is_dm=True), "all": all_rooms()}}
    r = await ss(alice, body)
    assert (r["lists"]["dms"]["count"], len(reads)) == (0, 1)
    await alice.send_text(room, "news")
    r = await ss(alice, body, pos=r["pos"])
    assert len(reads) == 1 and list(r["rooms"]) == [room]  # the same m.direct
    put = await alice.put(f"/_matrix/client/v3/user/{alice.user_id}/account_data/m.direct",
                          {"@bob:test.local": [room]})
    assert put.status == 200
    r = await ss(alice, body, pos=r["pos"])
    assert len(reads) == 2 and r["lists"]["dms"]["count"] == 1
    r = await ss(alice, body)  # a new connection reads it
    assert len(reads) == 3 and r["rooms"][room]["is_dm"] is True


async def test_a_forgotten_room_is_not_listed(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    kept = await alice.create_room(name="kept")
    left = await bob.create_room(name="left", preset="public_chat")
    await alice.join(left)
    body = {"lists": {"all": all_rooms()}}
    assert (await ss(alice, body))["lists"]["all"]["count"] == 2
    r = await bob.post(f"/_matrix/client/v3/rooms/{left}/kick", {"user_id": alice.user_id})
    assert r.status == 200
    # Kicked: still listed, until forgotten.
    assert (await ss(alice, body))["lists"]["all"]["count"] == 2
    r = await alice.post(f"/_matrix/client/v3/rooms/{left}/forget")
    assert r.status == 200
    r = await ss(alice, body)
    assert r["lists"]["all"]["count"] == 1 and list(r["rooms"]) == [kept]
    # Invited again, it is back (the forgetting was of the room as left), also while
    # another room left makes the forgotten ones be read.
    other = await bob.create_room(name="also left", preset="public_chat")
    await alice.join(other)
    r = await bob.post(f"/_matrix/client/v3/rooms/{other}/kick", {"user_id": alice.user_id})
    assert r.status == 200
    await bob.invite(left, alice.user_id)
    r = await ss(alice, body)
    assert r["lists"]["all"]["count"] == 3 and "invite_state" in r["rooms"][left]


async def test_spaces_filter(api):
    alice = await api.register("alice")
    space = await alice.create_room(creation_content={"type": "m.space"})
    child = await alice.create_room()
    await alice.create_room()
    await send_state(alice, space, "m.space.child", {"via": ["test"]}, state_key=child)
    r = await ss(alice, {"lists": {"in_space": all_rooms(spaces=[space])}})
    assert r["lists"]["in_space"]["count"] == 1
    assert list(r["rooms"]) == [child]


async def test_invite_then_join_is_sent_again_as_initial(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await bob.create_room(preset="public_chat")
    body = {"lists": {"all": all_rooms(timeline_limit=3)}}
    first = await ss(alice, body)
    assert first["rooms"] == {}
    await bob.invite(room, alice.user_id)
    r = await ss(alice, body, pos=first["pos"])
    assert "invite_state" in r["rooms"][room]
    await alice.join(room)
    r = await ss(alice, body, pos=r["pos"])
    section = r["rooms"][room]
    assert section["initial"] is True and "invite_state" not in section
    assert section["timeline"][-1]["type"] == "m.room.member"


async def test_long_poll_woken_by_a_message(api):
    alice, bob, room = await alice_and_bob_in_a_room(api)
    body = {"lists": {"all": all_rooms(timeline_limit=5)}}
    first = await ss(alice, body)
    poll = asyncio.create_task(ss(alice, body, pos=first["pos"], timeout=30000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    await bob.send_text(room, "wake up")
    r = await asyncio.wait_for(poll, 10)
    assert bodies(r["rooms"][room]["timeline"]) == ["wake up"]
    # With nothing new, the timeout ends the poll with nothing.
    r = await ss(alice, body, pos=r["pos"], timeout=50)
    assert r["rooms"] == {}


async def test_extensions_typing_receipts_account_data(api):
    alice, bob, room = await alice_and_bob_in_a_room(api)
    event_id = await bob.send_text(room, "read me")
    ext = {"typing": {"enabled": True}, "receipts": {"enabled": True},
           "account_data": {"enabled": True, "lists": ["*"], "rooms": ["*"]}}
    body = {"lists": {"all": all_rooms()}, "extensions": ext}
    r = await alice.put(f"/_matrix/client/v3/user/{alice.user_id}/rooms/{room}/account_data/org.example",
                        {"k": 1})
    assert r.status == 200
    first = await ss(alice, body)
    data = first["extensions"]["account_data"]
    assert "m.push_rules" in {e["type"] for e in data["global"]}
    assert data["rooms"][room] == [{"type": "org.example", "content": {"k": 1}}]
    assert first["extensions"]["typing"]["rooms"] == {}

    r = await bob.put(f"/_matrix/client/v3/rooms/{room}/typing/{bob.user_id}", {"typing": True, "timeout": 10000})
    assert r.status == 200
    r = await bob.post(f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}", {})
    assert r.status == 200
    r = await alice.put(f"/_matrix/client/v3/user/{alice.user_id}/account_data/org.example.global", {"g": 2})
    assert r.status == 200
    later = await ss(alice, body, pos=first["pos"])
    ext_out = later["extensions"]
    assert ext_out["typing"]["rooms"][room] == {"type": "m.typing", "content": {"user_ids": [bob.user_id]}}
    receipt = ext_out["receipts"]["rooms"][room]
    assert receipt["type"] == "m.receipt"
    assert bob.user_id in receipt["content"][event_id]["m.read"]
    assert {"type": "org.example.global", "content": {"g": 2}} in ext_out["account_data"]["global"]
    assert ext_out["account_data"]["rooms"] == {}
    # Sent once: the next request has none of it.
    again = await ss(alice, body, pos=later["pos"])
    assert again["extensions"]["receipts"]["rooms"] == {}
    assert again["extensions"]["typing"]["rooms"] == {}
    assert again["extensions"]["account_data"]["global"] == []


async def test_a_room_entering_the_window_gets_its_account_data_read_alone(api):
    """A room new to the window gets all its account data, read for it alone; a request
    with no account data written since reads none."""
    alice = await api.register("alice")
    old, other, newest = [await alice.create_room(name=f"room {i}") for i in range(3)]
    for room, value in ((old, 1), (other, 2)):
        r = await alice.put(f"{V3}/user/{alice.user_id}/rooms/{room}/account_data/org.example", {"k": value})
        assert r.status == 200
    await alice.send_text(newest, "newest")
    body = {"lists": {"all": all_rooms(end=0)},
            "extensions": {"account_data": {"enabled": True, "lists": ["*"], "rooms": ["*"]}}}
    first = await ss(alice, body)
    assert list(first["rooms"]) == [newest]
    assert first["extensions"]["account_data"]["rooms"] == {}
    sent = record_statements(api.services.db)
    await alice.send_text(old, "back on top")
    r = await ss(alice, body, pos=first["pos"])
    assert list(r["rooms"]) == [old]
    assert r["extensions"]["account_data"]["rooms"] == {old: [{"type": "org.example", "content": {"k": 1}}]}
    reads = [s for s in sent if "FROM account_data" in s]
    assert len(reads) == 1 and "room_id = ANY" in reads[0], reads
    sent.clear()
    await alice.send_text(old, "again")
    r = await ss(alice, body, pos=r["pos"])
    assert list(r["rooms"]) == [old] and r["extensions"]["account_data"]["rooms"] == {}
    assert not [s for s in sent if "FROM account_data" in s], sent


async def test_the_unread_counts_are_read_beside_the_timelines(api):
    """An incremental response reads its rooms' timelines while the read of their unread
    counts waits (here on a lock), and answers with both once it is free."""
    alice, bob, room = await alice_and_bob_in_a_room(api)
    body = {"lists": {"all": all_rooms(timeline_limit=5)}}
    first = await ss(alice, body)
    said = await bob.send_text(room, "news")
    await api.services.notifications.settle_all()
    sent = record_statements(api.services.db)
    r = await answered_behind_a_lock(
        api.services.db, "push_actions_evaluated", ss(alice, body, pos=first["pos"]),
        lambda: any(s.startswith("SELECT w.room_id, ARRAY(SELECT event_id FROM events") for s in sent))
    section = r["rooms"][room]
    assert [e["event_id"] for e in section["timeline"]] == [said]
    assert section["notification_count"] == 1


AHEAD_READS = ("SELECT r.room_id, (SELECT b.stream_ordering",  # the rooms' facts
               "SELECT c.room_id, c.type, c.state_key, c.event_id, c.membership FROM unnest",  # current state
               "SELECT w.room_id, ARRAY(SELECT event_id FROM events",  # the timelines
               "WITH unread_rooms AS")  # what the unread counts need


async def test_a_wake_reads_the_rooms_of_the_last_window_beside_the_memberships(api):
    """The rooms of the previous response whose streams moved get their facts (for the
    lists), current state, timelines and unread counts read before the memberships read
    answers: with that read held up by a lock, all are read all the same, each once, and
    the response is whole once it answers."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    rooms = []
    for i in range(3):
        rooms.append(await alice.create_room(preset="public_chat", name=f"room {i}"))
        await bob.join(rooms[-1])
    body = {"lists": {"all": all_rooms(timeline_limit=5, required_state=[["m.room.name", ""]])}}
    first = await ss(alice, body)
    said = await bob.send_text(rooms[1], "news")
    await api.services.notifications.settle_all()
    sent = record_statements(api.services.db)
    # The memberships read counts the device's fallback keys; nothing else here does.
    r = await answered_behind_a_lock(
        api.services.db, "e2e_fallback_keys", ss(alice, body, pos=first["pos"]),
        lambda: all(any(s.startswith(read) for s in sent) for read in AHEAD_READS))
    assert list(r["rooms"]) == [rooms[1]]
    assert [e["event_id"] for e in r["rooms"][rooms[1]]["timeline"]] == [said]
    assert r["rooms"][rooms[1]]["notification_count"] == 1
    assert r["lists"]["all"]["count"] == 3
    assert [sum(s.startswith(read) for s in sent) for read in AHEAD_READS] == [1, 1, 1, 1]


async def test_rooms_the_guess_missed_are_read_after(api):
    """A room that enters the window and a room joined since the previous response are
    built as without the guess; a room left since goes out with its leave."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    outside, inside, gone = [await alice.create_room(preset="public_chat", name=f"r{i}") for i in range(3)]
    for room in (outside, inside, gone):
        await bob.join(room)
    body = {"lists": {"all": all_rooms(end=1, timeline_limit=5, required_state=[["m.room.name", ""]])}}
    first = await ss(bob, body)
    assert set(first["rooms"]) == {inside, gone}
    await bob.post(f"{V3}/rooms/{gone}/leave", {})
    joined = await alice.create_room(preset="public_chat", name="new")
    await bob.join(joined)
    said = await alice.send_text(outside, "back on top")
    r = await ss(bob, body, pos=first["pos"])
    assert set(r["rooms"]) == {outside, joined}, list(r["rooms"])
    assert said in [e["event_id"] for e in r["rooms"][outside]["timeline"]]
    assert r["rooms"][outside]["name"] == "r0" and r["rooms"][joined]["name"] == "new"
    assert r["lists"]["all"]["count"] == 4


async def test_a_room_of_the_window_left_since_ends_at_the_leave(api):
    """A room the guess reads ahead (in the window, joined, its stream moved) but which
    the user left meanwhile is shown up to the leave, as without the guess."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat", name="left")
    # World-readable: what is sent after the leave is left out by the window alone.
    await send_state(alice, room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    await bob.join(room)
    body = {"lists": {"all": all_rooms(timeline_limit=5, required_state=[["m.room.name", ""]])}}
    first = await ss(bob, body)
    assert list(first["rooms"]) == [room]
    await alice.send_text(room, "before the leave")
    await bob.post(f"{V3}/rooms/{room}/leave", {})
    await alice.send_text(room, "after the leave")
    r = await ss(bob, body, pos=first["pos"])
    timeline = r["rooms"][room]["timeline"]
    assert timeline[-1]["type"] == "m.room.member" and timeline[-1]["content"]["membership"] == "leave"
    assert "after the leave" not in bodies(timeline)
    assert "before the leave" in bodies(timeline)


async def test_a_room_joined_again_is_sorted_by_its_new_join(api):
    """A room left and joined again between two requests has the same membership but a
    new membership event: it is sorted by the new join, not by the row of last time."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    older = await alice.create_room(preset="public_chat", name="older")
    await bob.join(older)
    newer = await alice.create_room(preset="public_chat", name="newer")
    await bob.join(newer)
    body = {"lists": {"all": all_rooms(end=0)}}
    first = await ss(bob, body)
    assert list(first["rooms"]) == [newer]
    await bob.post(f"{V3}/rooms/{older}/leave", {})
    await bob.join(older)
    r = await ss(bob, body, pos=first["pos"])
    assert list(r["rooms"]) == [older]


async def test_who_ended_a_membership_is_known_after_the_first_request(api):
    """After a connection's first request, the memberships are read without their
    events' senders, which the rows of last time know: a room the user was kicked from
    stays listed, one they left themselves only in the response that first has the leave."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    kicked, left = [await alice.create_room(preset="public_chat", name=n) for n in ("kicked", "left")]
    for room in (kicked, left):
        await bob.join(room)
    sent = record_statements(api.services.db)
    body = {"lists": {"all": all_rooms()}}
    first = await ss(bob, body)
    with_senders = "JOIN events m ON m.event_id = c.event_id"
    assert sum(with_senders in s for s in sent) == 1
    r = await alice.post(f"{V3}/rooms/{kicked}/kick", {"user_id": bob.user_id})
    assert r.status == 200, r
    await bob.post(f"{V3}/rooms/{left}/leave", {})
    second = await ss(bob, body, pos=first["pos"])
    assert second["lists"]["all"]["count"] == 2 and set(second["rooms"]) == {kicked, left}
    third = await ss(bob, body, pos=second["pos"])
    assert third["lists"]["all"]["count"] == 1
    assert sum(with_senders in s for s in sent) == 1


async def test_extensions_to_device_and_e2ee(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    r = await alice.post("/_matrix/client/v3/keys/upload", {
        "one_time_keys": {f"signed_curve25519:AAA{i}": {"key": f"otk{i}"} for i in range(3)},
        "fallback_keys": {"signed_curve25519:FB1": {"key": "fallback", "fallback": True}}})
    assert r.status == 200 and r["one_time_key_counts"] == {"signed_curve25519": 3}, r
    body = {"extensions": {"to_device": {"enabled": True}, "e2ee": {"enabled": True}}}
    first = await ss(alice, body)
    e2ee = first["extensions"]["e2ee"]
    assert e2ee["device_lists"] == {"changed": [], "left": []}
    assert e2ee["device_one_time_keys_count"] == {"signed_curve25519": 3}
    assert e2ee["device_unused_fallback_key_types"] == ["signed_curve25519"]
    to_device = first["extensions"]["to_device"]
    assert to_device["events"] == []
    r = await bob.put("/_matrix/client/v3/sendToDevice/m.test/txn1",
                      {"messages": {alice.user_id: {alice.device_id: {"hello": "alice"}}}})
    assert r.status == 200
    body["extensions"]["to_device"]["since"] = to_device["next_batch"]
    later = await ss(alice, body, pos=first["pos"])
    events = later["extensions"]["to_device"]["events"]
    assert [(e["type"], e["sender"], e["content"]) for e in events] == [("m.test", bob.user_id, {"hello": "alice"})]
    # Bob joining a room of alice's: his devices are to be (re)fetched.
    await bob.join(room)
    body["extensions"]["to_device"]["since"] = later["extensions"]["to_device"]["next_batch"]
    r = await ss(alice, body, pos=later["pos"])
    assert r["extensions"]["to_device"]["events"] == []
    assert bob.user_id in r["extensions"]["e2ee"]["device_lists"]["changed"]


async def test_left_room_is_sent_once_then_dropped(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    other = await alice.create_room()
    body = {"lists": {"all": all_rooms(timeline_limit=2)}}
    first = await ss(alice, body)
    assert first["lists"]["all"]["count"] == 2
    r = await alice.post(f"{V3}/rooms/{room}/leave", {})
    assert r.status == 200
    later = await ss(alice, body, pos=first["pos"])
    assert later["rooms"][room]["timeline"][-1]["content"]["membership"] == "leave"
    # A fresh connection does not list a room the user left themself.
    fresh = await ss(alice, body)
    assert fresh["lists"]["all"]["count"] == 1
    assert list(fresh["rooms"]) == [other]


async def test_ignored_senders_are_left_out(api):
    alice, bob, room = await alice_and_bob_in_a_room(api)
    await send_event(bob, room, "m.room.message", {"msgtype": "m.text", "body": "spam"}, "spam1")
    r = await alice.put(f"/_matrix/client/v3/user/{alice.user_id}/account_data/m.ignored_user_list",
                        {"ignored_users": {bob.user_id: {}}})
    assert r.status == 200
    r = await ss(alice, {"room_subscriptions": {room: {"required_state": [], "timeline_limit": 10}}})
    assert bodies(r["rooms"][room]["timeline"]) == []


async def test_bad_input_is_a_clear_matrix_error(api):
    alice = await api.register("alice")
    cases = [
        {"lists": {"all": {"ranges": [[5, 1]], "timeline_limit": 1, "required_state": []}}},
        {"lists": {"all": {"ranges": [[0]], "timeline_limit": 1, "required_state": []}}},
        {"lists": {"all": {"ranges": [[0, 1]], "timeline_limit": -1, "required_state": []}}},
        {"lists": {"all": {"ranges": [[0, 1]], "timeline_limit": "5", "required_state": []}}},
        {"lists": {"all": {"ranges": [[0, 1]], "timeline_limit": 1, "required_state": [["only-type"]]}}},
        {"room_subscriptions": {"!r:test": {"required_state": "nope", "timeline_limit": 1}}},
        {"extensions": {"to_device": {"enabled": "yes"}}},
        {"lists": []},
    ]
    for body in cases:
        r = await ss(alice, body, expect=400)
        assert r.errcode in ("M_BAD_JSON", "M_INVALID_PARAM"), (body, r)
        assert r.body["error"]
    r = await ss(alice, {"extensions": {"to_device": {"enabled": True, "since": "x1"}}}, expect=400)
    assert r.errcode == "M_INVALID_PARAM"
    r = await alice.request("POST", SS, raw=b"[]")
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await alice.request("POST", SS, {}, params={"timeout": "soon"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await api.request("POST", SS, {})
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"
    # Unknown fields are ignored, as Synapse does.
    r = await ss(alice, {"lists": {"all": {**all_rooms(), "slow_get_all_rooms": True}}, "unknown": 1})
    assert r["lists"]["all"]["count"] == 0


async def test_queries_are_bounded_by_the_window_not_the_number_of_rooms(api):
    """A user in 4 rooms and one in 24, both with a window of 3: the same number of queries."""
    counted = count_queries(api.services.db)

    async def queries_for(user: User, room_count: int) -> int:
        for i in range(room_count):
            room = await user.create_room(name=f"{user.user_id} {i}")
            await user.send_text(room, f"hello {i}")
        body = {"lists": {"all": all_rooms(end=2, timeline_limit=5,
                                          required_state=[["m.room.member", "$LAZY"], ["m.room.name", ""]])},
                "extensions": {"receipts": {"enabled": True}, "typing": {"enabled": True},
                               "account_data": {"enabled": True}}}
        first = await ss(user, body)  # warms the caches of both users alike
        assert len(first["rooms"]) == 3
        await api.services.notifications.settle_all()  # (their recordings come after the responses)
        counted["n"] = 0
        r = await ss(user, body)
        assert first["lists"]["all"]["count"] == room_count == r["lists"]["all"]["count"]
        await api.services.notifications.settle_all()
        n = counted["n"]
        counted["n"] = 0
        await ss(user, body, pos=r["pos"])
        await api.services.notifications.settle_all()
        return n, counted["n"]

    few = await queries_for(await api.register("few"), 4)
    many = await queries_for(await api.register("many"), 24)
    assert few == many


async def test_queries_do_not_grow_with_the_rooms_of_the_window(api):
    """Windows of 3 and of 20 rooms (named and nameless, joined and left, invites), warm
    and with the event caches emptied: the same number of queries (issue 7)."""
    services = api.services
    counted = count_queries(services.db)
    me = await api.register("me")
    other = await api.register("other")
    for i in range(24):
        room = await other.create_room(preset="public_chat", **({"name": f"room {i}"} if i % 2 else {}))
        if i % 8 == 7:
            await other.invite(room, me.user_id)  # an invite: its stripped state only
            continue
        await me.join(room)
        await other.send_text(room, f"hello {i}")
        await me.send_text(room, f"hi {i}")
        if i % 8 == 5:
            await me.post(f"/_matrix/client/v3/rooms/{room}/leave")

    def body(end: int) -> dict[str, Any]:
        return {"lists": {"all": all_rooms(end=end, timeline_limit=2,
                                           required_state=[["m.room.member", "$LAZY"], ["m.room.name", ""]])},
                "extensions": {"receipts": {"enabled": True}, "account_data": {"enabled": True}}}

    async def queries_for(end: int, empty_caches: bool) -> tuple[int, Response]:
        if empty_caches:
            services.events._cache.clear()
            services.state._groups.clear()
        await services.notifications.settle_all()  # (their recordings come after the responses)
        counted["n"] = 0
        r = await ss(me, body(end))
        await services.notifications.settle_all()
        return counted["n"], r

    await ss(me, body(19))  # the caches every count below starts from
    for empty_caches in (False, True):
        few, r3 = await queries_for(2, empty_caches)
        many, r20 = await queries_for(19, empty_caches)
        assert (len(r3["rooms"]), len(r20["rooms"])) == (3, 20)
        assert few == many, (empty_caches, few, many)
    rooms = r20["rooms"].values()
    assert sum("invite_state" in room for room in rooms) == 3
    assert all(room.get("name", "").startswith("room ") or room.get("heroes") for room in rooms
               if "invite_state" not in room)
    assert all(len(room["timeline"]) == 2 for room in rooms if "invite_state" not in room)


async def test_the_room_list_reads_again_only_the_rooms_whose_stream_moved(api):
    from tests.helpers import watch_statements

    alice = await api.register("alice")
    rooms = [await alice.create_room(name=f"r{i}") for i in range(5)]
    facts_reads: list[str] = []
    def facts_read(sql: str) -> None:
        if " ".join(sql.split()).startswith(AHEAD_READS[0]):
            facts_reads.append(sql)

    watch_statements(api.services.db, facts_read)
    body = {"lists": {"all": all_rooms(end=9)}}
    r = await ss(alice, body)
    assert len(facts_reads) == 1  # nothing remembered yet: every room
    facts_reads.clear()
    r = await ss(alice, body, pos=r["pos"])
    assert facts_reads == [] and r["rooms"] == {}
    # A message in the oldest room bumps it to the top: only that room is read again.
    await alice.send_text(rooms[0], "bump")
    r = await ss(alice, body, pos=r["pos"])
    assert len(facts_reads) == 1 and list(r["rooms"]) == [rooms[0]]
    r = await ss(alice, body)  # a new connection: the rooms in bump order
    assert list(r["rooms"])[0] == rooms[0] and r["lists"]["all"]["count"] == 5
    # Encryption turned on is seen by the list's filter at once.
    await alice.put(f"/_matrix/client/v3/rooms/{rooms[3]}/state/m.room.encryption/",
                    {"algorithm": "m.megolm.v1.aes-sha2"})
    encrypted = {"lists": {"enc": all_rooms(end=9, is_encrypted=True)}}
    assert list((await ss(alice, encrypted))["rooms"]) == [rooms[3]]


async def test_a_new_request_does_not_wait_for_an_abandoned_long_poll(api):
    alice = await api.register("alice")
    await alice.create_room()
    body = {"lists": {"all": all_rooms()}}
    first = await ss(alice, body)
    poll = asyncio.create_task(ss(alice, body, pos=first["pos"], timeout=60000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    # The client changed its window: it asks again with the same pos, and is answered.
    wider = {"lists": {"all": all_rooms(end=50)}}
    r = await asyncio.wait_for(ss(alice, wider, pos=first["pos"]), 10)
    assert r["lists"]["all"]["count"] == 1
    poll.cancel()


async def test_a_read_receipt_of_the_user_resends_the_room_with_new_counts(api):
    alice, bob, room = await alice_and_bob_in_a_room(api)
    await bob.send_text(room, "one")
    last = await bob.send_text(room, "two")
    body = {"lists": {"all": all_rooms()}}
    first = await ss(alice, body)
    assert first["rooms"][room]["notification_count"] == 2
    r = await alice.post(f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{last}", {})
    assert r.status == 200
    later = await ss(alice, body, pos=first["pos"])
    assert later["rooms"][room]["notification_count"] == 0
    assert later["rooms"][room]["timeline"] == []


async def test_leaving_sends_the_rest_of_the_timeline_not_a_new_room(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await bob.create_room(preset="public_chat")
    await alice.join(room)
    body = {"lists": {"all": all_rooms(timeline_limit=10)}}
    first = await ss(alice, body)
    assert first["rooms"][room]["initial"] is True
    await bob.send_text(room, "bye?")
    r = await alice.post(f"{V3}/rooms/{room}/leave", {})
    assert r.status == 200
    await bob.send_text(room, "after alice left")
    later = await ss(alice, body, pos=first["pos"])
    section = later["rooms"][room]
    assert "initial" not in section
    assert [e["type"] for e in section["timeline"]] == ["m.room.message", "m.room.member"]
    assert section["timeline"][-1]["content"]["membership"] == "leave"


async def test_the_bump_stamp_is_read_from_the_partial_index(api):
    from homeserver.storage.sliding_sync import _BUMP_TYPES_SQL

    async with api.services.db.transaction() as conn:
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        statement = await conn.prepare(
            "EXPLAIN SELECT b.stream_ordering FROM events b WHERE b.room_id = $1 AND b.type IN ("
            + _BUMP_TYPES_SQL + ") AND NOT b.outlier AND b.rejected_reason IS NULL AND b.stream_ordering <= $2"
            " ORDER BY b.stream_ordering DESC LIMIT 1")
        plan = "\n".join(r[0] for r in await statement.fetch("!room:test", 10))
    assert "events_room_bump" in plan, plan


async def test_the_same_request_with_nothing_new_reads_nothing_until_woken(api):
    """Element X asks again with the pos it was just given: where every stream still is,
    the long poll waits before it reads anything. A request that asks something else
    (a wider range) is answered from the same pos at once."""
    alice, bob, room = await alice_and_bob_in_a_room(api)
    other = await alice.create_room(preset="public_chat")
    await bob.send_text(room, "the newer room")
    narrow = {"lists": {"all": all_rooms(end=0)}}
    first = await ss(alice, narrow)
    assert list(first["rooms"]) == [room]
    counted = count_queries(api.services.db)
    poll = asyncio.create_task(ss(alice, narrow, pos=first["pos"], timeout=30000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    assert counted["n"] == 0
    wider = await asyncio.wait_for(ss(alice, {"lists": {"all": all_rooms(end=1)}}, pos=first["pos"], timeout=30000), 10)
    assert list(wider["rooms"]) == [other]
    assert not poll.done()
    await bob.send_text(room, "wake up")
    r = await asyncio.wait_for(poll, 10)
    assert bodies(r["rooms"][room]["timeline"]) == ["wake up"]


async def test_the_reads_of_a_wake_keep_to_their_generic_plans(api):
    """PostgreSQL plans a prepared statement afresh for its first five runs, then keeps its
    generic plan if that looks no dearer. The reads of a wake pass their arrays through
    scalar subqueries so that it does; else each run was planned again (a third of the
    database's CPU at a wake)."""
    alice, bob, room = await alice_and_bob_in_a_room(api)
    body = {"lists": {"all": all_rooms(timeline_limit=5)}}
    pos = (await ss(alice, body))["pos"]
    for n in range(40):
        await bob.send_text(room, f"wake {n}")
        pos = (await ss(alice, body, pos=pos))["pos"]
    pool = api.services.db.pool
    connections = [await pool.acquire() for _ in range(pool.get_size())]
    generic = {read: 0 for read in AHEAD_READS}
    try:
        for connection in connections:
            for row in await connection.fetch(
                    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"):
                for read in AHEAD_READS:
                    if " ".join(row["statement"].split()).startswith(read):
                        # Each connection prepares its own: five custom plans at most, each.
                        assert row["custom_plans"] <= 5, (read, row["custom_plans"])
                        generic[read] += row["generic_plans"]
    finally:
        for connection in connections:
            await pool.release(connection)
    assert all(generic.values()), generic
