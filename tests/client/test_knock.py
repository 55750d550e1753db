"""Knocking: asking to join a room (room versions 7 and later), accepted by an invite,
rejected by a kick, retracted by leaving.

Spec: https://spec.matrix.org/v1.19/client-server-api/#knocking-on-rooms
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

V3 = "/_matrix/client/v3"


async def knock_room(owner, version: str = "10", join_rule: str = "knock", **extra) -> str:
    return await owner.create_room(
        room_version=version,
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": join_rule}}],
        name="Knock knock", **extra,
    )


async def membership_of(user, room_id: str, target: str) -> str | None:
    r = await user.get(f"{V3}/rooms/{room_id}/state/m.room.member/{target}")
    assert r.status in (200, 404), r
    return r["membership"] if r.status == 200 else None


async def member_count(services, room_id: str) -> int:
    return await services.db.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND type = 'm.room.member'", room_id)


@pytest.mark.parametrize("version", ["7", "8", "9", "10", "11", "12"])
async def test_knock_allowed_in_knock_room_of_every_version_from_7(api, version):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice, version)
    r = await bob.post(f"{V3}/knock/{room_id}", {"reason": "let me in"})
    assert r.status == 200, r
    assert r.body == {"room_id": room_id}
    member = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}")
    assert member.status == 200
    assert member.body == {"membership": "knock", "reason": "let me in"}


@pytest.mark.parametrize("version", ["10", "12"])
async def test_knock_allowed_in_knock_restricted_room(api, version):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice, version, join_rule="knock_restricted")
    r = await bob.post(f"{V3}/knock/{room_id}", {})
    assert r.status == 200, r
    assert await membership_of(alice, room_id, bob.user_id) == "knock"


async def test_knock_by_alias(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice, room_alias_name="knockers")
    r = await bob.post(f"{V3}/knock/{quote('#knockers:test.local')}", {})
    assert r.status == 200, r
    assert r["room_id"] == room_id
    assert await membership_of(alice, room_id, bob.user_id) == "knock"


async def test_knock_refused_in_invite_only_room(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="private_chat", room_version="10")
    before = await member_count(services, room_id)
    r = await bob.post(f"{V3}/knock/{room_id}", {"reason": "please"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await member_count(services, room_id) == before


async def test_knock_refused_in_public_room(api):
    # A public room is joined, not knocked on.
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat", room_version="10")
    r = await bob.post(f"{V3}/knock/{room_id}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r


async def test_knock_refused_in_room_version_6(api, services):
    # Version 6 knows no knock membership, even with the join rule set to "knock".
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice, "6")
    before = await member_count(services, room_id)
    r = await bob.post(f"{V3}/knock/{room_id}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await member_count(services, room_id) == before


async def test_knock_refused_when_joined_or_banned(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice)
    r = await alice.post(f"{V3}/knock/{room_id}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    r = await alice.post(f"{V3}/rooms/{room_id}/ban", {"user_id": bob.user_id})
    assert r.status == 200, r
    r = await bob.post(f"{V3}/knock/{room_id}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await membership_of(alice, room_id, bob.user_id) == "ban"


async def test_knock_bad_input(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice)
    r = await bob.post(f"{V3}/knock/{room_id}", {"reason": 5})
    assert r.status == 400 and r.errcode == "M_BAD_JSON", r
    r = await bob.request("POST", f"{V3}/knock/{room_id}", raw=b"not json")
    assert r.status == 400 and r.errcode == "M_NOT_JSON", r
    r = await bob.post(f"{V3}/knock/not-a-room", {})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await bob.post(f"{V3}/knock/!nowhere:test.local", {})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    r = await bob.post(f"{V3}/knock/{quote('#nowhere:test.local')}", {})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    r = await api.request("POST", f"{V3}/knock/{room_id}", {})
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN", r
    assert await membership_of(alice, room_id, bob.user_id) is None


async def test_knocker_sees_the_room_under_knock_in_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice)
    since = (await bob.sync())["next_batch"]
    r = await bob.post(f"{V3}/knock/{room_id}", {"reason": "hi"})
    assert r.status == 200, r

    for sync in (await bob.sync(since=since), await bob.sync()):
        rooms = sync["rooms"]
        assert room_id not in rooms["join"] and room_id not in rooms["invite"]
        events = rooms["knock"][room_id]["knock_state"]["events"]
        by_type = {(e["type"], e["state_key"]): e for e in events}
        assert by_type[("m.room.name", "")]["content"] == {"name": "Knock knock"}
        assert by_type[("m.room.join_rules", "")]["content"] == {"join_rule": "knock"}
        assert ("m.room.create", "") in by_type
        mine = by_type[("m.room.member", bob.user_id)]
        assert mine["sender"] == bob.user_id
        assert mine["content"] == {"membership": "knock", "reason": "hi"}
        # Stripped state: no event ids, timestamps or room ids.
        assert all(set(e) == {"type", "state_key", "sender", "content"} for e in events)

    # The members see the knock in their timeline.
    timeline = (await alice.sync())["rooms"]["join"][room_id]["timeline"]["events"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id
               and e["content"]["membership"] == "knock" for e in timeline)


async def test_knock_wakes_the_members_long_poll(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice)
    since = (await alice.sync())["next_batch"]
    poll = asyncio.create_task(alice.sync(since=since, timeout=10_000))
    await asyncio.sleep(0.05)
    r = await bob.post(f"{V3}/knock/{room_id}", {})
    assert r.status == 200, r
    timeline = (await poll)["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["content"]["membership"] for e in timeline if e["type"] == "m.room.member"] == ["knock"]


async def test_accept_knock_by_invite(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice)
    assert (await bob.post(f"{V3}/knock/{room_id}", {})).status == 200
    since = (await bob.sync())["next_batch"]
    # A knocker cannot let themself in.
    r = await bob.post(f"{V3}/join/{room_id}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r

    await alice.invite(room_id, bob.user_id)
    rooms = (await bob.sync(since=since))["rooms"]
    assert room_id in rooms["invite"] and room_id not in rooms["knock"]
    await bob.join(room_id)
    assert await membership_of(alice, room_id, bob.user_id) == "join"
    rooms = (await bob.sync())["rooms"]
    assert room_id in rooms["join"] and room_id not in rooms["knock"]


async def test_accepting_needs_invite_power(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await knock_room(alice, power_level_content_override={"invite": 50})
    await alice.invite(room_id, carol.user_id)
    await carol.join(room_id)
    assert (await bob.post(f"{V3}/knock/{room_id}", {})).status == 200
    r = await carol.post(f"{V3}/rooms/{room_id}/invite", {"user_id": bob.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await membership_of(alice, room_id, bob.user_id) == "knock"


async def test_reject_knock_by_kick(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice)
    assert (await bob.post(f"{V3}/knock/{room_id}", {})).status == 200
    since = (await bob.sync())["next_batch"]
    r = await alice.post(f"{V3}/rooms/{room_id}/kick", {"user_id": bob.user_id, "reason": "not today"})
    assert r.status == 200, r
    member = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}")
    assert member.body == {"membership": "leave", "reason": "not today"}
    rooms = (await bob.sync(since=since))["rooms"]
    assert room_id in rooms["leave"] and room_id not in rooms["knock"]
    assert room_id not in (await bob.sync())["rooms"]["knock"]
    # A rejected knocker may knock again.
    assert (await bob.post(f"{V3}/knock/{room_id}", {})).status == 200
    assert await membership_of(alice, room_id, bob.user_id) == "knock"


async def test_retract_knock_by_leave(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await knock_room(alice)
    assert (await bob.post(f"{V3}/knock/{room_id}", {})).status == 200
    since = (await bob.sync())["next_batch"]
    r = await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    assert r.status == 200, r
    assert await membership_of(alice, room_id, bob.user_id) == "leave"
    rooms = (await bob.sync(since=since))["rooms"]
    assert room_id in rooms["leave"] and room_id not in rooms["knock"]
    assert room_id not in (await bob.sync())["rooms"]["knock"]
