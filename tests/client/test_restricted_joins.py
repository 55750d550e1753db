"""Restricted rooms: members of an allowed room (a space) join without an invite.

Spec: https://spec.matrix.org/v1.19/client-server-api/#restricted-rooms
"""

from __future__ import annotations

import pytest

V3 = "/_matrix/client/v3"


def _allow(join_rule: str, room_id: str) -> dict:
    return {"type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": join_rule, "allow": [{"type": "m.room_membership", "room_id": room_id}]}}


async def _member(user, room_id: str, user_id: str):
    return await user.get(f"{V3}/rooms/{room_id}/state/m.room.member/{user_id}")


@pytest.mark.parametrize("version", ["8", "10", "12"])
async def test_a_member_of_the_space_joins_the_restricted_room(api, version):
    alice, bob = await api.register("alice"), await api.register("bob")
    space = await alice.create_room(preset="public_chat", room_version=version,
                                    creation_content={"type": "m.space"})
    room = await alice.create_room(room_version=version, initial_state=[_allow("restricted", space)])
    await bob.join(space)
    r = await bob.post(f"{V3}/join/{room}", {})
    assert r.status == 200, r
    member = await _member(alice, room, bob.user_id)
    # Alice, who may invite, vouched for the join; the auth rules accepted it.
    assert member["membership"] == "join"
    assert member["join_authorised_via_users_server"] == alice.user_id


async def test_a_user_outside_the_allowed_rooms_is_refused(api, services):
    alice, bob = await api.register("alice"), await api.register("bob")
    space = await alice.create_room(preset="public_chat", room_version="10")
    room = await alice.create_room(room_version="10", initial_state=[_allow("restricted", space)])
    r = await bob.post(f"{V3}/join/{room}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert (await services.state.get_membership(room, bob.user_id)) is None


async def test_knock_restricted_admits_members_and_lets_others_knock(api):
    alice, bob, carol = await api.register("alice"), await api.register("bob"), await api.register("carol")
    space = await alice.create_room(preset="public_chat", room_version="10")
    room = await alice.create_room(room_version="10", initial_state=[_allow("knock_restricted", space)])
    await bob.join(space)
    assert (await bob.post(f"{V3}/join/{room}", {})).status == 200
    assert (await _member(alice, room, bob.user_id))["membership"] == "join"
    # Carol is in no allowed room: she may not join, but she may knock.
    refused = await carol.post(f"{V3}/join/{room}", {})
    assert refused.status == 403 and refused.errcode == "M_FORBIDDEN", refused
    assert (await carol.post(f"{V3}/knock/{room}", {})).status == 200
    assert (await _member(alice, room, carol.user_id))["membership"] == "knock"


async def test_no_one_here_may_vouch_when_the_only_inviter_left(api):
    alice, bob = await api.register("alice"), await api.register("bob")
    space = await alice.create_room(preset="public_chat", room_version="10")
    room = await alice.create_room(room_version="10", initial_state=[_allow("restricted", space)])
    await bob.join(space)
    assert (await alice.post(f"{V3}/rooms/{room}/leave", {})).status == 200
    r = await bob.post(f"{V3}/join/{room}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
