"""Rooms: Synapse's docs/admin_api/rooms.md (list, details, members, state, block, delete)."""

from __future__ import annotations

from homeserver.storage.purge import PurgeStore
from tests.admin.helpers import ROOM_FIELDS, V1, V2, admin_services, assert_admin_only, make_admin, q

ROOMS = "/_matrix/client/v3/rooms"


async def _family_room(api, admin):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat", name="Family", room_alias_name="family",
                                   visibility="public")
    await bob.join(room)
    await alice.invite(room, admin.user_id)
    await alice.send_text(room, "hello")
    return alice, bob, room


async def test_every_room_endpoint_is_admin_only(api):
    alice = await api.register("alice")
    room = await alice.create_room()
    for method, path, body in [
        ("GET", V1 + "/rooms", None),
        ("GET", f"{V1}/rooms/{room}", None),
        ("GET", f"{V1}/rooms/{room}/members", None),
        ("GET", f"{V1}/rooms/{room}/state", None),
        ("GET", f"{V1}/rooms/{room}/forward_extremities", None),
        ("GET", f"{V1}/rooms/{room}/block", None),
        ("PUT", f"{V1}/rooms/{room}/block", {"block": True}),
        ("DELETE", f"{V2}/rooms/{room}", {"block": True}),
        ("GET", f"{V2}/rooms/{room}/delete_status", None),
        ("GET", f"{V2}/rooms/delete_status/some-id", None),
        ("DELETE", f"{V1}/rooms/{room}", {}),
    ]:
        await assert_admin_only(api, method, path, body, user=alice)
    assert await api.services.rooms.room_exists(room)


async def test_list_details_members_state(api):
    admin = await make_admin(api)
    alice, bob, room = await _family_room(api, admin)
    other = await bob.create_room(name="Bob's")
    r = await admin.get(V1 + "/rooms", params={"order_by": "name", "dir": "f", "from": "0", "limit": "10"})
    assert r.status == 200, r
    assert r["total_rooms"] == 2 and r["offset"] == 0 and "next_batch" not in r.body
    assert [room_["room_id"] for room_ in r["rooms"]] == [other, room]  # "Bob's" < "Family"
    listed = r["rooms"][1]
    assert ROOM_FIELDS <= set(listed)
    assert listed["name"] == "Family" and listed["canonical_alias"] == "#family:test.local"
    assert listed["joined_members"] == 2 and listed["joined_local_members"] == 2
    assert listed["creator"] == alice.user_id and isinstance(listed["version"], str)
    assert listed["public"] is True and listed["federatable"] is True and listed["join_rules"] == "public"
    assert listed["encryption"] is None and listed["history_visibility"] == "shared"
    assert listed["state_events"] >= 7 and listed["room_type"] is None

    r = await admin.get(V1 + "/rooms", params={"limit": "1", "order_by": "joined_members", "dir": "b"})
    assert [x["room_id"] for x in r["rooms"]] == [room] and r["next_batch"] == 1
    r = await admin.get(V1 + "/rooms", params={"from": "1", "limit": "1", "order_by": "joined_members", "dir": "b"})
    assert [x["room_id"] for x in r["rooms"]] == [other] and r["prev_batch"] == 0
    r = await admin.get(V1 + "/rooms", params={"search_term": "fami"})
    assert [x["room_id"] for x in r["rooms"]] == [room] and r["total_rooms"] == 1
    r = await admin.get(V1 + "/rooms", params={"search_term": other})
    assert [x["room_id"] for x in r["rooms"]] == [other]
    for params in ({"order_by": "room_id; DROP TABLE rooms"}, {"dir": "x"}, {"limit": "-5"}):
        r = await admin.get(V1 + "/rooms", params=params)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", params

    r = await admin.get(f"{V1}/rooms/{room}")
    assert r.status == 200 and ROOM_FIELDS <= set(r.body)
    assert r["joined_local_devices"] == 2 and r["forgotten"] is False and r["topic"] is None
    assert (await admin.get(f"{V1}/rooms/!unknown:test.local")).errcode == "M_NOT_FOUND"
    assert (await admin.get(f"{V1}/rooms/not-a-room")).status == 400

    r = await admin.get(f"{V1}/rooms/{room}/forward_extremities")
    assert r["count"] == 1 and len(r["results"]) == 1
    assert {"event_id", "state_group", "depth", "received_ts"} <= set(r["results"][0])
    r = await admin.get(V1 + "/rooms", params={"order_by": "id", "dir": "b"})
    assert [x["room_id"] for x in r["rooms"]] == sorted([room, other], reverse=True)

    r = await admin.get(f"{V1}/rooms/{room}/members")
    assert r.body == {"members": sorted([alice.user_id, bob.user_id]), "total": 2}
    r = await admin.get(f"{V1}/rooms/{room}/state")
    types = {(e["type"], e["state_key"]) for e in r["state"]}
    assert ("m.room.create", "") in types and ("m.room.member", bob.user_id) in types
    for event in r["state"]:
        assert {"event_id", "sender", "origin_server_ts", "room_id", "content"} <= set(event)


async def test_block_refuses_joins_and_invites(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    assert (await admin.get(f"{V1}/rooms/{room}/block")).body == {"block": False}
    assert (await admin.put(f"{V1}/rooms/{room}/block", {"block": True})).body == {"block": True}
    assert (await admin.get(f"{V1}/rooms/{room}/block")).body == {"block": True, "user_id": admin.user_id}
    r = await bob.post(f"/_matrix/client/v3/join/{room}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await alice.post(f"{ROOMS}/{room}/invite", {"user_id": bob.user_id})
    assert r.status == 403
    assert (await admin.put(f"{V1}/rooms/{room}/block", {"block": False})).body == {"block": False}
    await bob.join(room)
    assert (await admin.put(f"{V1}/rooms/{room}/block", {"block": "yes"})).status == 400


async def test_delete_with_purge_kicks_members_and_leaves_no_rows(api):
    admin = await make_admin(api)
    alice, bob, room = await _family_room(api, admin)
    bob_sync = await bob.sync()
    # Rows of the room beyond its events: a tag (room account data), a receipt, a forgotten row.
    r = await alice.put(f"/_matrix/client/v3/user/{q(alice.user_id)}/rooms/{room}/tags/u.family", {})
    assert r.status == 200, r
    last = await alice.send_text(room, "bye")
    assert (await bob.post(f"{ROOMS}/{room}/receipt/m.read/{last}", {})).status == 200
    purge = PurgeStore(api.services.db)
    before = {t: n for t, n in (await purge.rows_left(room)).items() if n}
    assert {"events", "current_state", "state_groups", "account_data", "receipts", "room_aliases",
            "rooms", "forward_extremities"} <= set(before), before
    r = await admin.delete(f"{V2}/rooms/{room}", {"block": True, "purge": True, "message": "closing"})
    assert r.status == 200, r
    delete_id = r["delete_id"]
    await admin_services(api).room_deleter.wait_idle()

    r = await admin.get(f"{V2}/rooms/delete_status/{delete_id}")
    assert r.status == 200, r
    assert r["status"] == "complete" and r["delete_id"] == delete_id and r["room_id"] == room, r
    shutdown = r["shutdown_room"]
    assert sorted(shutdown["kicked_users"]) == sorted([alice.user_id, bob.user_id, admin.user_id])
    assert shutdown["failed_to_kick_users"] == [] and shutdown["local_aliases"] == ["#family:test.local"]
    assert shutdown["new_room_id"] is None
    r = await admin.get(f"{V2}/rooms/{room}/delete_status")
    assert [(x["delete_id"], x["status"]) for x in r["results"]] == [(delete_id, "complete")]

    # Every row about the room is gone, in every table with a room_id and those keyed by its events.
    assert {t: n for t, n in (await purge.rows_left(room)).items() if n} == {}
    db = api.services.db
    assert await db.fetchval("SELECT count(*) FROM state_group_entries e JOIN state_groups g"
                             " ON g.id = e.state_group WHERE g.room_id = $1", room) == 0
    assert await db.fetchval("SELECT count(*) FROM event_edges WHERE event_id NOT IN"
                             " (SELECT event_id FROM events)") == 0
    assert not await api.services.rooms.room_exists(room)
    assert await api.services.rooms.get_alias("#family:test.local") is None
    assert (await admin.get(f"{V1}/rooms/{room}")).errcode == "M_NOT_FOUND"
    assert (await admin.get(V1 + "/rooms")).body["total_rooms"] == 0
    # Members sync on without errors; the blocked room cannot be joined again.
    r = await bob.sync(since=bob_sync["next_batch"])
    assert r.status == 200
    assert room not in r["rooms"].get("join", {})
    r = await bob.post(f"/_matrix/client/v3/join/{room}", {})
    assert r.status in (403, 404)
    assert (await admin.get(f"{V1}/rooms/{room}/block")).body["block"] is True


async def test_delete_without_purge_and_the_synchronous_version(api):
    admin = await make_admin(api)
    alice, bob, room = await _family_room(api, admin)
    r = await admin.delete(f"{V2}/rooms/{room}", {"purge": False})
    delete_id = r["delete_id"]
    await admin_services(api).room_deleter.wait_idle()
    r = await admin.get(f"{V2}/rooms/delete_status/{delete_id}")
    assert r["status"] == "complete"
    assert await api.services.rooms.room_exists(room)  # not purged
    assert (await api.services.state.get_members(room, "join")) == {}
    assert (await admin.get(f"{V1}/rooms/{room}")).body["public"] is False

    other = await alice.create_room(preset="public_chat")
    await bob.join(other)
    r = await admin.delete(f"{V1}/rooms/{other}", {})
    assert r.status == 200, r
    assert sorted(r["kicked_users"]) == sorted([alice.user_id, bob.user_id]) and r["new_room_id"] is None
    assert not await api.services.rooms.room_exists(other)


async def test_delete_refusals(api):
    admin = await make_admin(api)
    r = await admin.delete(f"{V2}/rooms/!unknown:test.local", {})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await admin.delete(f"{V2}/rooms/not-a-room", {})
    assert r.status == 400
    r = await admin.delete(f"{V2}/rooms/!unknown:test.local", {"purge": "yes"})
    assert r.status == 400
    assert (await admin.get(f"{V2}/rooms/delete_status/nope")).errcode == "M_NOT_FOUND"
    assert (await admin.get(f"{V2}/rooms/!unknown:test.local/delete_status")).errcode == "M_NOT_FOUND"
    # Blocking an unknown room in advance is allowed, as Synapse does.
    r = await admin.delete(f"{V2}/rooms/!later:test.local", {"block": True})
    assert r.status == 200
    await admin_services(api).room_deleter.wait_idle()
    assert (await admin.get(f"{V2}/rooms/delete_status/{r['delete_id']}")).body["status"] == "complete"
    assert (await admin.get(f"{V1}/rooms/!later:test.local/block")).body["block"] is True


async def test_a_failed_purge_reports_failed(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    room = await alice.create_room()
    deleter = admin_services(api).room_deleter

    async def broken(room_id):
        raise RuntimeError("disk on fire")

    deleter.purge_store.purge_room = broken
    r = await admin.delete(f"{V2}/rooms/{room}", {})
    await deleter.wait_idle()
    r = await admin.get(f"{V2}/rooms/delete_status/{r['delete_id']}")
    assert r.status == 200 and r["status"] == "failed" and "disk on fire" in r["error"]
    assert r["shutdown_room"]["kicked_users"] == [alice.user_id]


async def test_purge_covers_a_table_added_by_a_later_migration(api):
    admin = await make_admin(api)
    room = await admin.create_room()
    other = await admin.create_room()
    db = api.services.db
    await db.execute("CREATE TABLE later_feature (room_id TEXT NOT NULL, note TEXT)")
    await db.execute("INSERT INTO later_feature VALUES ($1, 'gone'), ($2, 'stays')", room, other)
    r = await admin.delete(f"{V1}/rooms/{room}", {"force_purge": True})
    assert r.status == 200, r
    assert [row["note"] for row in await db.fetch("SELECT note FROM later_feature")] == ["stays"]
    assert await api.services.rooms.room_exists(other)
    assert await db.fetchval("SELECT count(*) FROM events WHERE room_id = $1", other) > 0


async def test_join_a_user_to_a_room(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    public = await alice.create_room(preset="public_chat", room_alias_name="hall")
    await assert_admin_only(api, "POST", f"{V1}/join/{public}", {"user_id": bob.user_id}, user=alice)
    r = await admin.post(f"{V1}/join/{q('#hall:test.local')}", {"user_id": bob.user_id})
    assert r.status == 200 and r.body == {"room_id": public}, r
    assert (await api.services.state.get_membership(public, bob.user_id))[0] == "join"

    private = await alice.create_room()
    r = await admin.post(f"{V1}/join/{private}", {"user_id": bob.user_id})
    assert r.status == 403, r  # the admin is not in the room
    await alice.invite(private, admin.user_id)
    await admin.join(private)
    r = await admin.post(f"{V1}/join/{private}", {"user_id": bob.user_id})
    assert r.status == 200, r  # the admin, now a member, invited bob, who joined
    assert (await api.services.state.get_membership(private, bob.user_id))[0] == "join"
    for body in ({"user_id": "@nobody:test.local"}, {"user_id": "@x:elsewhere.example"}, {"user_id": 5}, {}):
        r = await admin.post(f"{V1}/join/{public}", body)
        assert 400 <= r.status < 500, (body, r)
    assert (await admin.post(f"{V1}/join/{q('#nowhere:test.local')}", {"user_id": bob.user_id})).status == 404


async def test_a_purged_room_takes_no_new_events(api):
    admin = await make_admin(api)
    alice, bob, room = await _family_room(api, admin)
    r = await admin.delete(f"{V1}/rooms/{room}", {})
    assert r.status == 200, r
    r = await alice.put(f"{ROOMS}/{room}/send/m.room.message/after", {"msgtype": "m.text", "body": "hello?"})
    assert 400 <= r.status < 500, r
    r = await alice.put(f"{ROOMS}/{room}/state/m.room.name", {"name": "back"})
    assert 400 <= r.status < 500, r
    assert (await alice.post(f"/_matrix/client/v3/join/{room}", {})).status in (403, 404)
    assert not await api.services.rooms.room_exists(room)
    assert await api.services.db.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room) == 0
