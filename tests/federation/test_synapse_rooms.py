"""Rooms shared with a real Synapse: invites and joins both ways, messages both ways, in order.

Synapse 1.163 from PyPI runs on 127.0.0.1 with an IP-literal server name and a
self-signed certificate; so does our server (ServerProcess(tls=True)).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.federation.interop_helpers import invited_to, our_client, register_ours, timeline_events


@pytest.mark.parametrize("room_version", ["10", "11", "12"])
async def test_synapse_user_invites_ours_who_joins_and_they_talk(synapse, our_server_tls, room_version):
    theirs = await synapse.register(f"mama{room_version}")
    ours = await register_ours(our_server_tls, f"peter{room_version}")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await s.create_room(preset="private_chat", room_version=room_version, name="Family")
        await s.invite(room_id, ours.user_id)
        invite = await o.sync_until(invited_to(room_id), timeout=60)
        names = [e["content"].get("name") for e in invite["invite_state"]["events"] if e["type"] == "m.room.name"]
        assert names == ["Family"]

        await o.join(room_id)
        await s.sync_until(timeline_events(room_id, "m.room.member", membership="join"), timeout=60)

        for i in range(3):
            await s.send_text(room_id, f"from synapse {i}")
        bodies: list[str] = []

        def collect(sync: dict):
            bodies.extend(e["content"]["body"] for e in timeline_events(room_id, "m.room.message")(sync))
            return len(bodies) >= 3

        await o.sync_until(collect, timeout=60)
        assert bodies == ["from synapse 0", "from synapse 1", "from synapse 2"]

        for i in range(3):
            await o.send_text(room_id, f"from us {i}")
        theirs_seen: list[str] = []

        def collect_theirs(sync: dict):
            theirs_seen.extend(e["content"]["body"] for e in timeline_events(room_id, "m.room.message")(sync)
                               if e["sender"] == ours.user_id)
            return len(theirs_seen) >= 3

        await s.sync_until(collect_theirs, timeout=60)
        assert theirs_seen == ["from us 0", "from us 1", "from us 2"]


@pytest.mark.parametrize("room_version", ["10", "11", "12"])
async def test_our_user_invites_a_synapse_user_who_joins(synapse, our_server_tls, room_version):
    theirs = await synapse.register(f"aunt{room_version}")
    ours = await register_ours(our_server_tls, f"anna{room_version}")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await o.create_room(preset="private_chat", room_version=room_version, name="Ours")
        await o.invite(room_id, theirs.user_id)
        await s.sync_until(invited_to(room_id), timeout=60)
        await s.join(room_id, via=[our_server_tls.federation_name])
        await o.sync_until(timeline_events(room_id, "m.room.member", membership="join"), timeout=60)
        await o.send_text(room_id, "welcome")
        [message] = await s.sync_until(timeline_events(room_id, "m.room.message", body="welcome"), timeout=60)
        assert message["sender"] == ours.user_id
        await s.send_text(room_id, "thanks")
        [reply] = await o.sync_until(timeline_events(room_id, "m.room.message", body="thanks"), timeout=60)
        assert reply["sender"] == theirs.user_id


async def test_our_user_knocks_on_a_synapse_room_and_is_let_in(synapse, our_server_tls):
    theirs = await synapse.register("porter")
    ours = await register_ours(our_server_tls, "knocker")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await s.create_room(preset="private_chat", room_version="10", name="Knock here",
                                      initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                      "content": {"join_rule": "knock"}}])
        await o.call("POST", f"/_matrix/client/v3/knock/{quote(room_id, safe='')}", {"reason": "hello"},
                     {"via": synapse.server_name})
        knock = await o.sync_until(lambda sync: sync["rooms"].get("knock", {}).get(room_id), timeout=60)
        assert any(e["type"] == "m.room.name" for e in knock["knock_state"]["events"])
        [knocked] = await s.sync_until(timeline_events(room_id, "m.room.member", membership="knock"), timeout=60)
        assert knocked["state_key"] == ours.user_id and knocked["content"]["reason"] == "hello"

        await s.invite(room_id, ours.user_id)
        await o.sync_until(invited_to(room_id), timeout=60)
        await o.join(room_id)
        await s.send_text(room_id, "come in")
        await o.sync_until(timeline_events(room_id, "m.room.message", body="come in"), timeout=60)


async def test_our_user_joins_a_restricted_synapse_room_through_its_space(synapse, our_server_tls):
    theirs = await synapse.register("spacekeeper")
    ours = await register_ours(our_server_tls, "spacewalker")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        space = await s.create_room(preset="public_chat", room_version="10", creation_content={"type": "m.space"})
        room = await s.create_room(room_version="10", initial_state=[{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
        refused = await o.request("POST", f"/_matrix/client/v3/join/{quote(room, safe='')}", {},
                                  {"via": synapse.server_name})
        assert refused[0] == 403, refused
        await o.join(space, via=[synapse.server_name])
        await o.join(room, via=[synapse.server_name])
        [member] = await s.sync_until(lambda sync: [
            e for e in timeline_events(room, "m.room.member", membership="join")(sync)
            if e["state_key"] == ours.user_id], timeout=60)
        assert member["content"]["join_authorised_via_users_server"] == theirs.user_id


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_our_user_rejects_an_invite_from_synapse(synapse, our_server_tls, room_version):
    theirs = await synapse.register(f"uncle{room_version}")
    ours = await register_ours(our_server_tls, f"nephew{room_version}")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await s.create_room(preset="private_chat", room_version=room_version)
        await s.invite(room_id, ours.user_id)
        await o.sync_until(invited_to(room_id), timeout=60)
        await o.leave(room_id)  # make_leave/send_leave through the inviting server
        [left] = await s.sync_until(lambda sync: [
            e for e in timeline_events(room_id, "m.room.member", membership="leave")(sync)
            if e["state_key"] == ours.user_id], timeout=60)
        assert left["sender"] == ours.user_id
        rooms = (await o.sync())["rooms"]
        assert room_id not in rooms["invite"]
