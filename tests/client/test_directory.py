"""Room aliases and m.room.canonical_alias.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-aliases,
https://spec.matrix.org/v1.19/client-server-api/#mroomcanonical_alias
"""

from __future__ import annotations

from urllib.parse import quote

V3 = "/_matrix/client/v3"


def alias_path(alias: str) -> str:
    return f"{V3}/directory/room/{quote(alias)}"


async def aliases_in_db(services) -> dict[str, str]:
    return dict(await services.db.fetch("SELECT room_alias, room_id FROM room_aliases"))


async def test_put_get_delete_alias(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.put(alias_path("#family:test.local"), {"room_id": room_id})
    assert r.status == 200 and r.body == {}
    r = await alice.get(alias_path("#family:test.local"))
    assert r.status == 200
    assert r.body == {"room_id": room_id, "servers": ["test.local"]}
    r = await alice.get(f"{V3}/rooms/{room_id}/aliases")
    assert r.status == 200 and r.body == {"aliases": ["#family:test.local"]}

    r = await alice.delete(alias_path("#family:test.local"))
    assert r.status == 200 and r.body == {}
    r = await alice.get(alias_path("#family:test.local"))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    assert (await alice.get(f"{V3}/rooms/{room_id}/aliases")).body == {"aliases": []}
    # Free again.
    r = await alice.put(alias_path("#family:test.local"), {"room_id": room_id})
    assert r.status == 200
    assert await aliases_in_db(services) == {"#family:test.local": room_id}


async def test_alias_lookup_needs_no_membership(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(room_alias_name="family")
    r = await bob.get(alias_path("#family:test.local"))
    assert r.status == 200 and r["room_id"] == room_id


async def test_putting_an_alias_needs_membership(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    r = await bob.put(alias_path("#bobs:test.local"), {"room_id": room_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await aliases_in_db(services) == {}
    await bob.join(room_id)
    r = await bob.put(alias_path("#bobs:test.local"), {"room_id": room_id})
    assert r.status == 200


async def test_taken_alias_is_409(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_a = await alice.create_room(room_alias_name="taken")
    room_b = await bob.create_room()
    r = await bob.put(alias_path("#taken:test.local"), {"room_id": room_b})
    assert r.status == 409 and r.errcode == "M_UNKNOWN"
    r = await alice.put(alias_path("#taken:test.local"), {"room_id": room_a})
    assert r.status == 409
    assert await aliases_in_db(services) == {"#taken:test.local": room_a}


async def test_unknown_alias(api):
    alice = await api.register("alice")
    r = await alice.get(alias_path("#nothing:test.local"))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await alice.delete(alias_path("#nothing:test.local"))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_invalid_alias_is_400(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    for bad in ("family", "#family", "!room:test.local", "#" + "x" * 300 + ":test.local"):
        for method in ("GET", "PUT", "DELETE"):
            body = {"room_id": room_id} if method == "PUT" else None
            r = await alice.request(method, alias_path(bad), body)
            assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (bad, method, r)
    assert await aliases_in_db(services) == {}


async def test_put_alias_bad_bodies(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.put(alias_path("#a:test.local"), {})
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    r = await alice.put(alias_path("#a:test.local"), {"room_id": 5})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await alice.put(alias_path("#a:test.local"), {"room_id": "!unknown:test.local"})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await alice.put(alias_path("#a:test.local"), {"room_id": "not-a-room"})
    assert r.status in (400, 404), r
    # Aliases of other servers are theirs to give.
    r = await alice.put(alias_path("#a:elsewhere.example"), {"room_id": room_id})
    assert r.status == 400 and r.errcode is not None
    assert await aliases_in_db(services) == {}


async def test_delete_needs_the_alias_creator_or_an_admin(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    admin = await api.register("admin")
    await services.users.set_admin(admin.user_id, True)
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    r = await bob.put(alias_path("#bobs:test.local"), {"room_id": room_id})
    assert r.status == 200
    r = await alice.put(alias_path("#alices:test.local"), {"room_id": room_id})
    assert r.status == 200

    r = await alice.delete(alias_path("#bobs:test.local"))
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await bob.delete(alias_path("#alices:test.local"))
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await aliases_in_db(services) == {"#bobs:test.local": room_id, "#alices:test.local": room_id}

    r = await bob.delete(alias_path("#bobs:test.local"))
    assert r.status == 200
    r = await admin.delete(alias_path("#alices:test.local"))
    assert r.status == 200
    assert await aliases_in_db(services) == {}


async def test_room_aliases_list_needs_membership(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat", room_alias_name="one")
    r = await alice.put(alias_path("#two:test.local"), {"room_id": room_id})
    assert r.status == 200
    r = await alice.get(f"{V3}/rooms/{room_id}/aliases")
    assert r.status == 200 and sorted(r["aliases"]) == ["#one:test.local", "#two:test.local"]
    r = await bob.get(f"{V3}/rooms/{room_id}/aliases")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await bob.get(f"{V3}/rooms/not-a-room/aliases")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


# m.room.canonical_alias


async def test_canonical_alias_must_point_to_the_room(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    await alice.create_room(room_alias_name="other")  # "#other" points to another room
    r = await alice.put(alias_path("#mine:test.local"), {"room_id": room_id})
    assert r.status == 200
    path = f"{V3}/rooms/{room_id}/state/m.room.canonical_alias"
    before = await services.db.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id)

    for content in (
        {"alias": "#unmapped:test.local"},
        {"alias": "#other:test.local"},
        {"alias": "#mine:test.local", "alt_aliases": ["#other:test.local"]},
        {"alt_aliases": ["#unmapped:test.local"]},
    ):
        r = await alice.put(path, content)
        assert r.status == 400 and r.errcode == "M_BAD_ALIAS", (content, r)
    assert await services.db.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id) == before

    r = await alice.put(path, {"alias": "#mine:test.local", "alt_aliases": ["#mine:test.local"]})
    assert r.status == 200, r
    assert (await alice.get(path)).body == {"alias": "#mine:test.local", "alt_aliases": ["#mine:test.local"]}
    # Clearing the canonical alias needs no alias check.
    r = await alice.put(path, {})
    assert r.status == 200


async def test_canonical_alias_with_invalid_syntax_is_invalid_param(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    path = f"{V3}/rooms/{room_id}/state/m.room.canonical_alias"
    for content in ({"alias": "not-an-alias"}, {"alias": "#nocolon"}, {"alt_aliases": ["!room:test.local"]},
                    {"alias": 5}, {"alt_aliases": "#a:test.local"}, {"alt_aliases": [7]}):
        r = await alice.put(path, content)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (content, r)
    assert (await alice.get(path)).status == 404
