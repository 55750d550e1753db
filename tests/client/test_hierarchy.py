"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy on one server (no federation involved).

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidhierarchy
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.helpers import User


def _path(room_id: str) -> str:
    return f"/_matrix/client/v1/rooms/{quote(room_id, safe='')}/hierarchy"


async def _space(user: User, name: str, preset: str = "public_chat", **extra: Any) -> str:
    return await user.create_room(name=name, preset=preset, creation_content={"type": "m.space"}, **extra)


async def _add_child(user: User, space_id: str, child_id: str, **content: Any) -> None:
    body = {"via": [user.api.services.server_name], **content}
    r = await user.put(f"/_matrix/client/v3/rooms/{quote(space_id, safe='')}/state/m.space.child/"
                       f"{quote(child_id, safe='')}", body)
    assert r.status == 200, r


async def _hierarchy(user: User, room_id: str, **params: Any) -> dict:
    r = await user.get(_path(room_id), params={k: str(v).lower() if isinstance(v, bool) else str(v)
                                               for k, v in params.items()})
    assert r.status == 200, r
    return r.body


def _ids(answer: dict) -> list[str]:
    return [room["room_id"] for room in answer["rooms"]]


def _restricted(allowed: str) -> dict:
    return {"type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": allowed}]}}


async def test_a_space_with_children_depth_first_and_only_what_the_user_may_see(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    space = await _space(alice, "Family", topic="Us")
    general = await alice.create_room(name="General", preset="public_chat")
    secret = await alice.create_room(name="Secret", preset="private_chat")
    sub = await _space(alice, "Cousins")
    nested = await alice.create_room(name="Cousins' chat", preset="public_chat")
    restricted = await alice.create_room(name="Members only", room_version="10", initial_state=[_restricted(space)])
    await _add_child(alice, space, general, order="a")
    await _add_child(alice, space, sub, order="b")
    await _add_child(alice, space, secret, order="c")
    await _add_child(alice, space, restricted, order="d")
    await _add_child(alice, sub, nested)

    # Alice is in every room: the walk goes into the sub-space before the later children.
    assert _ids(await _hierarchy(alice, space)) == [space, general, sub, nested, secret, restricted]

    # Bob is in none: the invite-only room is left out, and so is the restricted one
    # until he is in the space it admits the members of.
    answer = await _hierarchy(bob, space)
    assert _ids(answer) == [space, general, sub, nested]
    assert "next_batch" not in answer
    root = answer["rooms"][0]
    assert root["name"] == "Family" and root["topic"] == "Us" and root["room_type"] == "m.space"
    assert root["join_rule"] == "public" and root["num_joined_members"] == 1
    assert root["world_readable"] is False and root["guest_can_join"] is False
    # The root's children_state names every child, seen or not, as stripped events with a timestamp.
    assert [c["state_key"] for c in root["children_state"]] == [general, sub, secret, restricted]
    for child in root["children_state"]:
        assert child["type"] == "m.space.child" and child["sender"] == alice.user_id
        assert isinstance(child["origin_server_ts"], int) and child["content"]["via"] == ["test.local"]
        assert "event_id" not in child
    # A room that is not a space has no children_state entries.
    assert answer["rooms"][1]["children_state"] == []

    await bob.join(space)
    answer = await _hierarchy(bob, space)
    assert _ids(answer) == [space, general, sub, nested, restricted]
    entry = answer["rooms"][-1]
    assert entry["join_rule"] == "restricted" and entry["allowed_room_ids"] == [space]
    assert entry["room_version"] == "10"


async def test_children_follow_the_specs_order(api):
    alice = await api.register("alice")
    space = await _space(alice, "Ordered")
    rooms = {name: await alice.create_room(name=name) for name in "abcde"}
    # The spec's example: " " < "aaaa" < "first", then the children without a (valid) order by timestamp.
    await _add_child(alice, space, rooms["e"])
    await _add_child(alice, space, rooms["c"], order="first")
    await _add_child(alice, space, rooms["a"], order="aaaa")
    await _add_child(alice, space, rooms["d"], order="\u00e9 is not ASCII")
    await _add_child(alice, space, rooms["b"], order=" ")
    root = (await _hierarchy(alice, space, max_depth=0))["rooms"][0]
    by_id = {c["state_key"]: c for c in root["children_state"]}
    unordered = sorted([rooms["e"], rooms["d"]], key=lambda r: (by_id[r]["origin_server_ts"], r))
    assert [c["state_key"] for c in root["children_state"]] == [rooms["b"], rooms["a"], rooms["c"], *unordered]


async def test_suggested_only(api):
    alice = await api.register("alice")
    space = await _space(alice, "Space")
    suggested = await alice.create_room(name="Suggested", preset="public_chat")
    other = await alice.create_room(name="Other", preset="public_chat")
    await _add_child(alice, space, suggested, suggested=True, order="2")
    await _add_child(alice, space, other, suggested="yes", order="1")  # not the boolean: not suggested
    assert _ids(await _hierarchy(alice, space)) == [space, other, suggested]
    answer = await _hierarchy(alice, space, suggested_only=True)
    assert _ids(answer) == [space, suggested]
    assert [c["state_key"] for c in answer["rooms"][0]["children_state"]] == [suggested]


async def test_max_depth(api):
    alice = await api.register("alice")
    space = await _space(alice, "Top")
    sub = await _space(alice, "Middle")
    leaf = await alice.create_room(name="Leaf")
    await _add_child(alice, space, sub)
    await _add_child(alice, sub, leaf)
    assert _ids(await _hierarchy(alice, space, max_depth=0)) == [space]
    answer = await _hierarchy(alice, space, max_depth=1)
    assert _ids(answer) == [space, sub]
    # The sub-space at the depth limit still lists its children.
    assert [c["state_key"] for c in answer["rooms"][1]["children_state"]] == [leaf]
    assert _ids(await _hierarchy(alice, space, max_depth=2)) == [space, sub, leaf]
    assert _ids(await _hierarchy(alice, space)) == [space, sub, leaf]


async def test_pagination(api):
    alice = await api.register("alice")
    space = await _space(alice, "Big")
    children = [await alice.create_room(name=f"Room {i}", preset="public_chat") for i in range(5)]
    for i, child in enumerate(children):
        await _add_child(alice, space, child, order=f"{i:02d}")
    everything = _ids(await _hierarchy(alice, space))
    assert everything == [space, *children]

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if token:
            params["from"] = token
        answer = await _hierarchy(alice, space, **params)
        pages += 1
        assert len(answer["rooms"]) <= 2
        seen += _ids(answer)
        token = answer.get("next_batch")
        if token is None:
            break
    assert seen == everything and pages == 3

    first = await _hierarchy(alice, space, limit=2)
    # The same token gives the same page again.
    again = [_ids(await _hierarchy(alice, space, limit=2, **{"from": first["next_batch"]})) for _ in range(2)]
    assert again[0] == again[1] == children[1:3]
    # Neither max_depth nor suggested_only may change between pages; nor may the user.
    for changed in ({"max_depth": 1}, {"suggested_only": True}):
        r = await alice.get(_path(space), params={"from": first["next_batch"], **{k: str(v).lower()
                                                                               for k, v in changed.items()}})
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), r
    bob = await api.register("bob")
    r = await bob.get(_path(space), params={"from": first["next_batch"]})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), r
    r = await alice.get(_path(space), params={"from": "not-a-token"})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), r


async def test_invalid_children_and_loops(api):
    alice = await api.register("alice")
    space = await _space(alice, "Loop")
    sub = await _space(alice, "Back")
    room = await alice.create_room(name="Room")
    await _add_child(alice, space, sub, order="1")
    await _add_child(alice, sub, space)  # a loop back to the top
    await _add_child(alice, space, room, order="2")
    assert _ids(await _hierarchy(alice, space)) == [space, sub, room]

    # A child without a valid via is no child at all (removing one clears its content).
    for content in ({}, {"via": []}, {"via": "test.local"}, {"via": ["test.local", 5]}):
        r = await alice.put(f"/_matrix/client/v3/rooms/{quote(space, safe='')}/state/m.space.child/"
                            f"{quote(room, safe='')}", content)
        assert r.status == 200, r
        answer = await _hierarchy(alice, space)
        assert _ids(answer) == [space, sub], content
        assert [c["state_key"] for c in answer["rooms"][0]["children_state"]] == [sub]


async def test_which_rooms_a_user_may_see(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    space = await _space(alice, "Space")
    readable = await alice.create_room(name="Readable", preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}])
    knock = await alice.create_room(name="Knock", preset="private_chat", room_version="10", initial_state=[
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    invited = await alice.create_room(name="Invited", preset="private_chat")
    closed = await alice.create_room(name="Closed", preset="private_chat")
    for i, child in enumerate([readable, knock, invited, closed]):
        await _add_child(alice, space, child, order=str(i))
    await alice.invite(invited, bob.user_id)
    answer = await _hierarchy(bob, space)
    assert _ids(answer) == [space, readable, knock, invited]
    assert answer["rooms"][1]["world_readable"] is True
    assert answer["rooms"][2]["join_rule"] == "knock"


async def test_bad_requests(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    space = await _space(alice, "Space")
    private = await _space(alice, "Private", preset="private_chat")

    r = await api.request("GET", _path(space))
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), r
    for params in ({"limit": "0"}, {"limit": "-3"}, {"limit": "ten"}, {"max_depth": "-1"}, {"max_depth": "1.5"},
                   {"suggested_only": "maybe"}, {"via": "not a server"}):
        r = await alice.get(_path(space), params=params)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), (params, r)
    r = await alice.get("/_matrix/client/v1/rooms/not-a-room/hierarchy")
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), r

    # A room the user may not see, and one nobody here knows, are both refused.
    r = await bob.get(_path(private))
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r
    r = await bob.get(_path("!unknown:test.local"))
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r
    # A limit above the cap is capped, not refused.
    assert _ids(await _hierarchy(alice, space, limit=10_000, max_depth=10_000)) == [space]


async def test_a_banned_user_sees_the_room_no_more(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    space = await _space(alice, "Space")
    await bob.join(space)
    assert _ids(await _hierarchy(bob, space)) == [space]
    r = await alice.post(f"/_matrix/client/v3/rooms/{quote(space, safe='')}/ban", {"user_id": bob.user_id})
    assert r.status == 200, r
    r = await bob.get(_path(space))
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r
