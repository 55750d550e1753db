"""Filters: the filter API and filtered /sync.

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering
"""

from __future__ import annotations

import json

from tests.client.sync_helpers import V3, bodies, ids, leave, send_event, send_state, state, timeline
from tests.helpers import User


async def upload(user: User, body: object) -> str:
    r = await user.post(f"{V3}/user/{user.user_id}/filter", body)
    assert r.status == 200, r
    assert isinstance(r["filter_id"], str) and not r["filter_id"].startswith("{")
    return r["filter_id"]


async def filtered_sync(user: User, sync_filter: dict | str, since: str | None = None, **params: object):
    value = sync_filter if isinstance(sync_filter, str) else json.dumps(sync_filter)
    return await user.sync(since=since, filter=value, **params)


# The filter API


async def test_upload_and_download_a_filter(api):
    alice = await api.register("alice")
    body = {
        "room": {"timeline": {"limit": 5, "types": ["m.room.message"]}, "state": {"lazy_load_members": True}},
        "account_data": {"not_types": ["m.push_rules"]},
        "event_fields": ["type", "content.body"],
    }
    filter_id = await upload(alice, body)
    r = await alice.get(f"{V3}/user/{alice.user_id}/filter/{filter_id}")
    assert r.status == 200
    assert r.body == body
    other_id = await upload(alice, {"room": {"timeline": {"limit": 1}}})
    assert other_id != filter_id
    r = await alice.get(f"{V3}/user/{alice.user_id}/filter/{other_id}")
    assert r.body == {"room": {"timeline": {"limit": 1}}}


async def test_filters_of_other_users_are_forbidden(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    filter_id = await upload(alice, {"room": {"timeline": {"limit": 1}}})
    r = await bob.get(f"{V3}/user/{alice.user_id}/filter/{filter_id}")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await bob.post(f"{V3}/user/{alice.user_id}/filter", {"room": {}})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    # Filter ids are per user: bob has no filter of that id.
    r = await bob.get(f"{V3}/user/{bob.user_id}/filter/{filter_id}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_unknown_filter_is_not_found(api):
    alice = await api.register("alice")
    for filter_id in ["12345", "abc", "-1", "9" * 30]:
        r = await alice.get(f"{V3}/user/{alice.user_id}/filter/{filter_id}")
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", (filter_id, r)


async def test_invalid_filters_are_rejected_and_not_stored(api):
    alice = await api.register("alice")
    for body in [
        {"room": {"timeline": {"limit": "ten"}}},
        {"room": {"timeline": {"limit": 0}}},
        {"room": {"timeline": {"types": "m.room.message"}}},
        {"room": {"state": {"lazy_load_members": "yes"}}},
        {"room": {"rooms": "!abc:test.local"}},
        {"room": []},
        {"account_data": {"senders": [1]}},
        {"event_format": "xml"},
        {"event_fields": "content"},
    ]:
        r = await alice.post(f"{V3}/user/{alice.user_id}/filter", body)
        assert r.status == 400 and r.errcode == "M_BAD_JSON", (body, r)
    r = await alice.request("POST", f"{V3}/user/{alice.user_id}/filter", raw=b"{not json")
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await alice.request("POST", f"{V3}/user/{alice.user_id}/filter", raw=b"[]")
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    # Nothing was stored: the first good filter still gets the first id.
    assert await upload(alice, {}) == "0"


async def test_filter_api_requires_authentication(api):
    alice = await api.register("alice")
    r = await api.request("POST", f"{V3}/user/{alice.user_id}/filter", {})
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


# Filtered sync


async def test_sync_with_a_stored_filter_and_an_inline_filter(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    for i in range(5):
        await alice.send_text(room, f"m{i}")
    filter_id = await upload(alice, {"room": {"timeline": {"limit": 2}}})
    stored = await alice.sync(filter=filter_id)
    section = stored["rooms"]["join"][room]
    assert bodies(section["timeline"]["events"]) == ["m3", "m4"]
    assert section["timeline"]["limited"] is True
    inline = await filtered_sync(alice, {"room": {"timeline": {"limit": 3}}})
    assert bodies(timeline(inline, room)) == ["m2", "m3", "m4"]
    # The state then covers everything before the timeline, messages excepted.
    assert ("m.room.create", "") in {(e["type"], e["state_key"]) for e in state(inline, room)}


async def test_sync_with_an_unknown_or_invalid_filter(api):
    alice = await api.register("alice")
    for value in ["12345", "abc", "{not json", '{"room": {"timeline": {"limit": "x"}}}', "[]", "9" * 30,
                  "-1", "\u0661", '{"a":' + "[" * 1200]:
        r = await alice.get(f"{V3}/sync", params={"filter": value})
        assert r.status == 400 and r.errcode in ("M_INVALID_PARAM", "M_BAD_JSON", "M_NOT_JSON"), (value, r)


async def test_timeline_types_and_not_types_with_wildcards(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    msg = await alice.send_text(room, "hello")
    custom = await send_event(alice, room, "com.example.thing", {"x": 1}, "c1")
    topic = await send_state(alice, room, "m.room.topic", {"topic": "t"})
    only_messages = await filtered_sync(alice, {"room": {"timeline": {"types": ["m.room.message"]}}})
    assert ids(timeline(only_messages, room)) == [msg]
    room_star = await filtered_sync(alice, {"room": {"timeline": {"types": ["m.room.*"], "limit": 3}}})
    assert ids(timeline(room_star, room))[-2:] == [msg, topic]
    no_room_star = await filtered_sync(alice, {"room": {"timeline": {"not_types": ["m.room.*"]}}})
    assert ids(timeline(no_room_star, room)) == [custom]
    both = await filtered_sync(alice, {"room": {"timeline": {"types": ["m.room.*", "com.*"],
                                                             "not_types": ["m.room.m*"]}}})
    assert msg not in ids(timeline(both, room))
    assert ids(timeline(both, room))[-2:] == [custom, topic]
    assert all(not e["type"].startswith("m.room.m") for e in timeline(both, room))


async def test_timeline_senders_and_not_senders(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    a = await alice.send_text(room, "from alice")
    b = await bob.send_text(room, "from bob")
    only_bob = await filtered_sync(alice, {"room": {"timeline": {"senders": [bob.user_id]}}})
    assert ids(timeline(only_bob, room))[-1] == b
    assert {e["sender"] for e in timeline(only_bob, room)} == {bob.user_id}
    not_bob = await filtered_sync(alice, {"room": {"timeline": {"not_senders": [bob.user_id]}}})
    assert ids(timeline(not_bob, room))[-1] == a
    assert bob.user_id not in {e["sender"] for e in timeline(not_bob, room)}
    # not_senders wins over senders.
    nobody = await filtered_sync(alice, {"room": {"timeline": {"senders": [bob.user_id],
                                                               "not_senders": [bob.user_id]}}})
    assert timeline(nobody, room) == []


async def test_filters_apply_to_incremental_syncs(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    first_filter = {"room": {"timeline": {"types": ["m.room.message"]}}}
    first = await filtered_sync(alice, first_filter)
    await send_event(alice, room, "com.example.noise", {}, "n1")
    nothing = await filtered_sync(alice, first_filter, since=first["next_batch"])
    assert room not in nothing["rooms"]["join"]
    msg = await alice.send_text(room, "signal")
    something = await filtered_sync(alice, first_filter, since=nothing["next_batch"])
    assert ids(timeline(something, room)) == [msg]


async def test_room_filter_rooms_and_not_rooms(api):
    alice = await api.register("alice")
    one = await alice.create_room()
    two = await alice.create_room()
    three = await alice.create_room()
    r = await filtered_sync(alice, {"room": {"rooms": [one, two]}})
    assert set(r["rooms"]["join"]) == {one, two}
    r = await filtered_sync(alice, {"room": {"not_rooms": [two]}})
    assert set(r["rooms"]["join"]) == {one, three}
    r = await filtered_sync(alice, {"room": {"rooms": [one, two], "not_rooms": [two]}})
    assert set(r["rooms"]["join"]) == {one}
    r = await filtered_sync(alice, {"room": {"rooms": []}})
    assert r["rooms"]["join"] == {}


async def test_room_filter_applies_to_invites_and_leaves(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    invited = await alice.create_room()
    left = await alice.create_room(preset="public_chat")
    await bob.join(left)
    first = await bob.sync()
    await alice.invite(invited, bob.user_id)
    await leave(bob, left)
    r = await filtered_sync(bob, {"room": {"not_rooms": [invited, left]}}, since=first["next_batch"])
    assert invited not in r["rooms"]["invite"] and left not in r["rooms"]["leave"]
    r = await filtered_sync(bob, {"room": {"rooms": [invited, left]}}, since=first["next_batch"])
    assert invited in r["rooms"]["invite"] and left in r["rooms"]["leave"]


async def test_state_filter_types(api):
    alice = await api.register("alice")
    room = await alice.create_room(name="Named", topic="Topical")
    for i in range(10):
        await alice.send_text(room, f"m{i}")
    r = await filtered_sync(alice, {"room": {"state": {"types": ["m.room.name", "m.room.topic"]}}})
    assert {(e["type"], e["state_key"]) for e in state(r, room)} == {("m.room.name", ""), ("m.room.topic", "")}
    r = await filtered_sync(alice, {"room": {"state": {"not_types": ["m.room.member"]}}})
    keys = {(e["type"], e["state_key"]) for e in state(r, room)}
    assert ("m.room.create", "") in keys
    assert not any(t == "m.room.member" for t, _ in keys)


async def test_lazy_load_members_initial_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    dave = await api.register("dave")
    room = await alice.create_room(preset="public_chat")
    for user in (bob, carol, dave):
        await user.join(room)
    for i in range(10):
        await bob.send_text(room, f"b{i}")
    lazy = {"room": {"state": {"lazy_load_members": True}}}
    r = await filtered_sync(carol, lazy)
    senders = {e["sender"] for e in timeline(r, room)}
    assert senders == {bob.user_id}
    members = {e["state_key"] for e in state(r, room) if e["type"] == "m.room.member"}
    # Only the timeline's senders and the syncing user themself.
    assert members == {bob.user_id, carol.user_id}
    assert ("m.room.create", "") in {(e["type"], e["state_key"]) for e in state(r, room)}
    # Without lazy loading every member is in the state.
    full = await carol.sync()
    assert {e["state_key"] for e in state(full, room) if e["type"] == "m.room.member"} == {
        alice.user_id, bob.user_id, carol.user_id, dave.user_id
    }
    # In an incremental sync, a sender the client has not heard of gets their member event.
    dave_says = await dave.send_text(room, "I was here all along")
    r2 = await filtered_sync(carol, lazy, since=r["next_batch"])
    assert ids(timeline(r2, room)) == [dave_says]
    assert {e["state_key"] for e in state(r2, room) if e["type"] == "m.room.member"} == {dave.user_id}


async def test_lazy_load_members_limited_sync_keeps_membership_changes_in_the_gap(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    lazy = {"room": {"state": {"lazy_load_members": True}}}
    first = await filtered_sync(bob, lazy)
    await carol.join(room)
    for i in range(12):
        await alice.send_text(room, f"m{i}")
    r = await filtered_sync(bob, lazy, since=first["next_batch"])
    assert r["rooms"]["join"][room]["timeline"]["limited"] is True
    members = {e["state_key"] for e in state(r, room) if e["type"] == "m.room.member"}
    # Carol joined in the gap: the spec says the client must still learn of it.
    assert carol.user_id in members


async def test_include_leave_for_initial_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    said = await alice.send_text(room, "bye bob")
    await leave(bob, room)
    await alice.send_text(room, "he is gone")
    plain = await bob.sync()
    assert room not in plain["rooms"]["leave"] and room not in plain["rooms"]["join"]
    with_leave = await filtered_sync(bob, {"room": {"include_leave": True}})
    events = timeline(with_leave, room, "leave")
    assert said in ids(events)
    assert events[-1]["state_key"] == bob.user_id and events[-1]["content"]["membership"] == "leave"
    assert "he is gone" not in bodies(events)
    # After /forget the room is gone even with include_leave.
    r = await bob.post(f"{V3}/rooms/{room}/forget", {})
    assert r.status == 200
    forgotten = await filtered_sync(bob, {"room": {"include_leave": True}})
    assert room not in forgotten["rooms"]["leave"]


async def test_account_data_filters(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    for data_type in ("com.example.a", "com.example.b", "org.other.c"):
        r = await alice.put(f"{V3}/user/{alice.user_id}/account_data/{data_type}", {"t": data_type})
        assert r.status == 200
        r = await alice.put(f"{V3}/user/{alice.user_id}/rooms/{room}/account_data/{data_type}", {"r": data_type})
        assert r.status == 200
    r = await filtered_sync(alice, {"account_data": {"types": ["com.example.*"], "not_types": ["com.example.b"]},
                                    "room": {"account_data": {"types": ["org.*"]}}})
    assert [e["type"] for e in r["account_data"]["events"]] == ["com.example.a"]
    assert r["rooms"]["join"][room]["account_data"]["events"] == [{"type": "org.other.c",
                                                                   "content": {"r": "org.other.c"}}]
    r = await filtered_sync(alice, {"account_data": {"types": []}})
    assert r["account_data"]["events"] == []
