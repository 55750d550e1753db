"""POST /rooms/{roomId}/upgrade. Spec: https://spec.matrix.org/v1.19/client-server-api/#room-upgrades"""

from __future__ import annotations

import pytest

from tests.client.test_create_room import room_count, state_content, state_path


def upgrade_path(room_id: str) -> str:
    return f"/_matrix/client/v3/rooms/{room_id}/upgrade"


async def make_room(api, version: str = "12"):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(
        room_version=version, preset="public_chat", visibility="public", room_alias_name="family",
        name="Family", topic="All of us",
        initial_state=[{"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                       {"type": "m.room.avatar", "content": {"url": "mxc://example.org/abc"}}],
        power_level_content_override={"users": {bob.user_id: 50}} if version == "12" else None,
    )
    await bob.join(room_id)
    return alice, bob, room_id


@pytest.mark.parametrize("old_version,new_version", [("12", "12"), ("10", "12"), ("11", "10"), ("12", "11")])
async def test_upgrade_moves_state_aliases_and_directory(api, services, old_version, new_version):
    alice, bob, old_room = await make_room(api, old_version)
    alias = f"#family:{services.server_name}"
    r = await alice.post(upgrade_path(old_room), {"new_version": new_version})
    assert r.status == 200, r
    new_room = r["replacement_room"]
    assert new_room != old_room

    create = (await alice.get(state_path(new_room, "m.room.create"), params={"format": "event"})).body
    assert create["content"]["room_version"] == new_version
    assert create["sender"] == alice.user_id
    assert create["content"]["predecessor"]["room_id"] == old_room
    if new_version == "12":
        assert "creator" not in create["content"]
    else:
        assert create["content"]["predecessor"]["event_id"].startswith("$")
        if new_version == "10":
            assert create["content"]["creator"] == alice.user_id

    assert (await state_content(alice, new_room, "m.room.name"))["name"] == "Family"
    assert (await state_content(alice, new_room, "m.room.topic"))["topic"] == "All of us"
    assert (await state_content(alice, new_room, "m.room.avatar"))["url"] == "mxc://example.org/abc"
    assert (await state_content(alice, new_room, "m.room.join_rules"))["join_rule"] == "public"
    assert (await state_content(alice, new_room, "m.room.encryption"))["algorithm"] == "m.megolm.v1.aes-sha2"
    assert (await state_content(alice, new_room, "m.room.canonical_alias"))["alias"] == alias
    power = await state_content(alice, new_room, "m.room.power_levels")
    if new_version == "12":
        assert alice.user_id not in power["users"]  # a v12 creator is above every level
    else:
        assert power["users"][alice.user_id] == 100
    if old_version == "12":
        assert power["users"][bob.user_id] == 50

    tombstone = await state_content(alice, old_room, "m.room.tombstone")
    assert tombstone == {"body": "This room has been replaced", "replacement_room": new_room}
    old_power = await state_content(alice, old_room, "m.room.power_levels")
    assert old_power["events_default"] >= 50 and old_power["invite"] >= 50
    assert await state_content(alice, old_room, "m.room.canonical_alias") in (None, {})

    # the alias and the directory entry follow the room
    r = await alice.get(f"/_matrix/client/v3/directory/room/%23family:{services.server_name}")
    assert r.status == 200 and r["room_id"] == new_room, r
    assert await services.rooms.get_visibility(new_room) is True
    assert await services.rooms.get_visibility(old_room) is False

    # bob may no longer talk in the old room (power 0 < 50) unless he had power there, and can join the new one
    r = await bob.put(f"/_matrix/client/v3/rooms/{old_room}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"})
    assert r.status == (200 if old_version == "12" else 403), r
    await bob.join(new_room)
    await bob.send_text(new_room, "hello new room")


async def test_sync_shows_the_tombstone(api):
    alice, bob, old_room = await make_room(api)
    first = await bob.sync()
    r = await alice.post(upgrade_path(old_room), {"new_version": "12"})
    assert r.status == 200, r
    later = await bob.sync(since=first["next_batch"])
    timeline = later["rooms"]["join"][old_room]["timeline"]["events"]
    tombstones = [e for e in timeline if e["type"] == "m.room.tombstone"]
    assert tombstones and tombstones[0]["content"]["replacement_room"] == r["replacement_room"]


async def test_upgrade_to_an_unknown_version_is_refused_and_stores_nothing(api, services):
    alice, _, room_id = await make_room(api)
    before = await room_count(services)
    r = await alice.post(upgrade_path(room_id), {"new_version": "999"})
    assert r.status == 400 and r.errcode == "M_UNSUPPORTED_ROOM_VERSION", r
    assert await room_count(services) == before
    assert await state_content(alice, room_id, "m.room.tombstone") is None


async def test_bad_bodies(api, services):
    alice, _, room_id = await make_room(api)
    before = await room_count(services)
    r = await alice.post(upgrade_path(room_id), {})
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM", r
    r = await alice.post(upgrade_path(room_id), {"new_version": 12})
    assert r.status == 400 and r.errcode == "M_BAD_JSON", r
    r = await alice.request("POST", upgrade_path(room_id), raw=b"not json")
    assert r.status == 400 and r.errcode == "M_NOT_JSON", r
    r = await alice.post(upgrade_path("not-a-room"), {"new_version": "12"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await alice.post(upgrade_path(room_id), {"new_version": "10", "additional_creators": ["@x:y"]})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    assert await room_count(services) == before


async def test_only_users_who_may_send_a_tombstone_upgrade(api, services):
    alice, bob, room_id = await make_room(api, "11")
    carol = await api.register("carol")
    before = await room_count(services)
    r = await bob.post(upgrade_path(room_id), {"new_version": "12"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    r = await carol.post(upgrade_path(room_id), {"new_version": "12"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    r = await alice.post(upgrade_path("!unknown:example.org"), {"new_version": "12"})
    assert r.status in (403, 404), r
    assert await room_count(services) == before
    assert await state_content(alice, room_id, "m.room.tombstone") is None


async def test_a_replaced_room_is_not_upgraded_twice(api):
    alice, _, room_id = await make_room(api)
    r = await alice.post(upgrade_path(room_id), {"new_version": "12"})
    assert r.status == 200, r
    r = await alice.post(upgrade_path(room_id), {"new_version": "12"})
    assert r.status == 400, r


async def test_v12_additional_creators(api):
    alice, bob, room_id = await make_room(api)
    r = await alice.post(upgrade_path(room_id), {"new_version": "12", "additional_creators": [bob.user_id]})
    assert r.status == 200, r
    new_room = r["replacement_room"]
    create = await state_content(alice, new_room, "m.room.create")
    assert create["additional_creators"] == [bob.user_id]
    power = await state_content(alice, new_room, "m.room.power_levels")
    assert bob.user_id not in power["users"]
