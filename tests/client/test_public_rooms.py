"""The published room directory: room visibility and /publicRooms.

Spec: https://spec.matrix.org/v1.19/client-server-api/#published-room-directory
"""

from __future__ import annotations

from tests.client.sync_helpers import send_state
from tests.helpers import User

V3 = "/_matrix/client/v3"


def visibility_path(room_id: str) -> str:
    return f"{V3}/directory/list/room/{room_id}"


async def public_ids(user: User, **body) -> list[str]:
    r = await user.post(f"{V3}/publicRooms", body)
    assert r.status == 200, r
    return [room["room_id"] for room in r["chunk"]]


async def test_create_room_visibility_and_the_listing(api):
    alice = await api.register("alice")
    public = await alice.create_room(
        visibility="public", preset="public_chat", name="Family chat", topic="Dinner plans",
        room_alias_name="family",
    )
    private = await alice.create_room(name="Secret")
    r = await api.request("GET", visibility_path(public))
    assert r.status == 200 and r.body == {"visibility": "public"}
    r = await api.request("GET", visibility_path(private))
    assert r.status == 200 and r.body == {"visibility": "private"}
    # GET /publicRooms needs no access token.
    r = await api.request("GET", f"{V3}/publicRooms")
    assert r.status == 200
    assert r.body == {
        "chunk": [{
            "room_id": public, "num_joined_members": 1, "name": "Family chat", "topic": "Dinner plans",
            "canonical_alias": "#family:test.local", "world_readable": False, "guest_can_join": False,
            "join_rule": "public",
        }],
        "total_room_count_estimate": 1,
    }
    r = await alice.post(f"{V3}/publicRooms", {})
    assert r.status == 200 and [c["room_id"] for c in r["chunk"]] == [public]
    # POST needs one.
    r = await api.request("POST", f"{V3}/publicRooms", {})
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


async def test_entries_follow_the_room_state(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(
        visibility="public", preset="public_chat", creation_content={"type": "m.space"},
    )
    await send_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "world_readable"})
    await send_state(alice, room_id, "m.room.guest_access", {"guest_access": "can_join"})
    await send_state(alice, room_id, "m.room.avatar", {"url": "mxc://test.local/abc"})
    await send_state(alice, room_id, "m.room.join_rules", {"join_rule": "knock"})
    bob = await api.register("bob")
    await alice.invite(room_id, bob.user_id)
    await bob.join(room_id)
    r = await bob.get(f"{V3}/publicRooms")
    assert r["chunk"] == [{
        "room_id": room_id, "num_joined_members": 2, "world_readable": True, "guest_can_join": True,
        "avatar_url": "mxc://test.local/abc", "join_rule": "knock", "room_type": "m.space",
    }]
    # A name that is removed again disappears from the entry.
    await send_state(alice, room_id, "m.room.name", {"name": "Space"})
    assert (await bob.get(f"{V3}/publicRooms"))["chunk"][0]["name"] == "Space"
    await send_state(alice, room_id, "m.room.name", {})
    assert "name" not in (await bob.get(f"{V3}/publicRooms"))["chunk"][0]


async def test_publish_and_unpublish(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    assert await public_ids(alice) == []
    r = await alice.put(visibility_path(room_id), {"visibility": "public"})
    assert r.status == 200 and r.body == {}
    assert await public_ids(bob) == [room_id]
    assert (await api.request("GET", visibility_path(room_id))).body == {"visibility": "public"}
    # Not in the room, or in it without the power to set the canonical alias: 403, nothing changes.
    r = await bob.put(visibility_path(room_id), {"visibility": "private"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    await bob.join(room_id)
    r = await bob.put(visibility_path(room_id), {"visibility": "private"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await public_ids(bob) == [room_id]
    # Given that power, bob may.
    power = (await alice.get(f"{V3}/rooms/{room_id}/state/m.room.power_levels/")).body
    power["users"][bob.user_id] = 50
    await send_state(alice, room_id, "m.room.power_levels", power)
    r = await bob.put(visibility_path(room_id), {"visibility": "private"})
    assert r.status == 200
    assert await public_ids(bob) == []
    # The visibility defaults to public.
    r = await alice.put(visibility_path(room_id), {})
    assert r.status == 200
    assert await public_ids(bob) == [room_id]
    # A server admin may unpublish a room they are not in.
    await services.users.set_admin((await api.register("admin")).user_id, True)
    login = await api.login("admin")
    admin = User(api, login["user_id"], login["access_token"], login["device_id"])
    r = await admin.put(visibility_path(room_id), {"visibility": "private"})
    assert r.status == 200
    assert await public_ids(bob) == []


async def test_visibility_errors(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    unknown = "!nosuchroom:test.local"
    r = await api.request("GET", visibility_path(unknown))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await alice.put(visibility_path(unknown), {"visibility": "public"})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await api.request("GET", visibility_path("not-a-room-id"))
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    for body, errcode in [({"visibility": "hidden"}, "M_INVALID_PARAM"), ({"visibility": 1}, "M_BAD_JSON")]:
        r = await alice.put(visibility_path(room_id), body)
        assert r.status == 400 and r.errcode == errcode, r
    r = await alice.request("PUT", visibility_path(room_id), raw=b"{")
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await api.request("PUT", visibility_path(room_id), {"visibility": "public"})
    assert r.status == 401
    assert await services.db.fetchval("SELECT count(*) FROM rooms WHERE is_public") == 0


async def test_pagination_forwards_and_back(api):
    alice = await api.register("alice")
    others = [await api.register(f"user{i}") for i in range(3)]
    rooms = []
    for i in range(5):
        room_id = await alice.create_room(visibility="public", preset="public_chat", name=f"Room {i}")
        rooms.append(room_id)
    # Rooms with more members come first: room 4 gets 3 more, room 2 gets 1.
    for user in others:
        await user.join(rooms[4])
    await others[0].join(rooms[2])
    r = await alice.post(f"{V3}/publicRooms", {})
    everything = [c["room_id"] for c in r["chunk"]]
    assert everything[:2] == [rooms[4], rooms[2]]
    assert sorted(everything[2:]) == everything[2:] and set(everything) == set(rooms)
    assert [c["num_joined_members"] for c in r["chunk"]] == [4, 2, 1, 1, 1]
    assert "next_batch" not in r.body and "prev_batch" not in r.body

    pages, since = [], None
    while True:
        params = {"limit": "2"}
        if since:
            params["since"] = since
        r = await api.request("GET", f"{V3}/publicRooms", params=params)
        assert r.status == 200 and r["total_room_count_estimate"] == 5
        pages.append(r.body)
        since = r.body.get("next_batch")
        if since is None:
            break
    assert [[c["room_id"] for c in p["chunk"]] for p in pages] == [everything[0:2], everything[2:4], everything[4:]]
    assert "prev_batch" not in pages[0]
    # Back from the last page: the page before it, and from there the first.
    back = await alice.post(f"{V3}/publicRooms", {"limit": 2, "since": pages[2]["prev_batch"]})
    assert [c["room_id"] for c in back["chunk"]] == everything[2:4]
    assert back["next_batch"]
    first = await alice.post(f"{V3}/publicRooms", {"limit": 2, "since": back["prev_batch"]})
    assert [c["room_id"] for c in first["chunk"]] == everything[0:2]
    assert "prev_batch" not in first.body
    forward = await alice.post(f"{V3}/publicRooms", {"limit": 2, "since": first["next_batch"]})
    assert [c["room_id"] for c in forward["chunk"]] == everything[2:4]


async def test_search_and_room_types(api):
    alice = await api.register("alice")
    cooking = await alice.create_room(visibility="public", preset="public_chat", name="Cooking club")
    garden = await alice.create_room(visibility="public", preset="public_chat", topic="All about COOKING herbs")
    alias = await alice.create_room(visibility="public", preset="public_chat", room_alias_name="cookbook")
    space = await alice.create_room(visibility="public", preset="public_chat", name="Family space",
                                    creation_content={"type": "m.space"})
    assert set(await public_ids(alice, filter={"generic_search_term": "cook"})) == {cooking, garden, alias}
    assert await public_ids(alice, filter={"generic_search_term": "CLUB"}) == [cooking]
    assert await public_ids(alice, filter={"generic_search_term": "nothing like this"}) == []
    assert await public_ids(alice, filter={"generic_search_term": "%"}) == []
    assert await public_ids(alice, filter={"generic_search_term": space}) == [space]
    # An empty term filters nothing.
    assert len(await public_ids(alice, filter={"generic_search_term": ""})) == 4
    assert await public_ids(alice, filter={"room_types": ["m.space"]}) == [space]
    assert set(await public_ids(alice, filter={"room_types": [None]})) == {cooking, garden, alias}
    assert len(await public_ids(alice, filter={"room_types": [None, "m.space"]})) == 4
    assert await public_ids(alice, filter={"room_types": []}) == []
    assert len(await public_ids(alice, include_all_networks=True)) == 4
    # No bridged networks here.
    r = await alice.post(f"{V3}/publicRooms", {"third_party_instance_id": "irc"})
    assert r.status == 200 and r["chunk"] == []
    # Search and pagination together.
    r = await alice.post(f"{V3}/publicRooms", {"filter": {"generic_search_term": "cook"}, "limit": 2})
    second = await alice.post(f"{V3}/publicRooms", {"filter": {"generic_search_term": "cook"}, "limit": 2,
                                                    "since": r["next_batch"]})
    assert {c["room_id"] for c in r["chunk"] + second["chunk"]} == {cooking, garden, alias}
    assert "next_batch" not in second.body


async def test_text_that_jsonb_refuses_does_not_break_the_listing(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(visibility="public", preset="public_chat")
    r = await alice.put(f"{V3}/rooms/{room_id}/state/m.room.topic/", {"topic": "nul \u0000 here"})
    assert r.status == 200, r
    # The six characters \u0000 as text (an escaped backslash in the JSON) are no U+0000.
    await send_state(alice, room_id, "m.room.name", {"name": "ends in \\u0000"})
    r = await alice.get(f"{V3}/publicRooms")
    assert r.status == 200
    assert r["chunk"][0]["topic"] == "nul  here"
    assert r["chunk"][0]["name"] == "ends in \\u0000"


async def test_public_rooms_errors(api):
    alice = await api.register("alice")
    await alice.create_room(visibility="public", preset="public_chat")
    cases = [
        ("GET", {"limit": "-1"}, None, "M_INVALID_PARAM"),
        ("GET", {"limit": "ten"}, None, "M_INVALID_PARAM"),
        ("GET", {"since": "garbage"}, None, "M_INVALID_PARAM"),
        ("GET", {"since": "WyJ4IiwxLCIhYSJd"}, None, "M_INVALID_PARAM"),  # ["x",1,"!a"]
        ("GET", {"server": "other.example.org"}, None, "M_INVALID_PARAM"),
        ("GET", {"server": "bad server"}, None, "M_INVALID_PARAM"),
        ("POST", {}, {"limit": "10"}, "M_BAD_JSON"),
        ("POST", {}, {"limit": -1}, "M_INVALID_PARAM"),
        ("POST", {}, {"since": "%%%"}, "M_INVALID_PARAM"),
        ("POST", {}, {"filter": {"generic_search_term": 5}}, "M_BAD_JSON"),
        ("POST", {}, {"filter": {"room_types": "m.space"}}, "M_BAD_JSON"),
        ("POST", {}, {"include_all_networks": True, "third_party_instance_id": "irc"}, "M_INVALID_PARAM"),
        ("POST", {"server": "other.example.org"}, {}, "M_INVALID_PARAM"),
    ]
    for method, params, body, errcode in cases:
        r = await alice.request(method, f"{V3}/publicRooms", body, params=params)
        assert r.status == 400 and r.errcode == errcode, (method, params, body, r)
    # Our own server name is our own directory.
    r = await alice.get(f"{V3}/publicRooms", params={"server": "test.local"})
    assert r.status == 200 and len(r["chunk"]) == 1
