"""Space hierarchies across servers, and OpenID userinfo, with a real Synapse 1.163.

- Synapse's user asks Synapse for the hierarchy of a Synapse space whose child is a
  space of ours: Synapse asks us (GET /federation/v1/hierarchy) and shows what we answered.
- Our user asks us for the hierarchy of a public Synapse space they are not in: we ask
  Synapse, and show only what our user may see (a restricted room once they are in the space).
- A third party checks one of our OpenID tokens at our federation userinfo, over HTTPS,
  without a signature (no Synapse endpoint consumes another server's OpenID tokens).
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from tests.federation.interop_helpers import our_client, register_ours


def _hierarchy_path(room_id: str) -> str:
    return f"/_matrix/client/v1/rooms/{quote(room_id, safe='')}/hierarchy"


def _ids(answer: dict) -> list[str]:
    return [room["room_id"] for room in answer["rooms"]]


async def _add_child(client, space_id: str, child_id: str, via: str, **content) -> None:
    await client.send_state(space_id, "m.space.child", child_id, {"via": [via], **content})


async def test_synapse_shows_the_hierarchy_of_a_space_of_ours(synapse, our_server_tls):
    ours = await register_ours(our_server_tls, "gardener")
    theirs = await synapse.register("visitor")
    here = our_server_tls.federation_name
    async with our_client(our_server_tls, ours) as o, synapse.client(theirs) as s:
        space = await o.create_room(preset="public_chat", name="Our garden", topic="Plants",
                                    creation_content={"type": "m.space"})
        room = await o.create_room(preset="public_chat", name="Seeds")
        private = await o.create_room(preset="private_chat", name="Shed")
        await _add_child(o, space, room, here, order="1")
        await _add_child(o, space, private, here, order="2")

        # Synapse walks into a child it is not in by asking the child's via servers.
        top = await s.create_room(preset="public_chat", name="Their top", creation_content={"type": "m.space"})
        await _add_child(s, top, space, here)
        answer = await s.call("GET", _hierarchy_path(top))
        by_id = {r["room_id"]: r for r in answer["rooms"]}
        assert list(by_id) == [top, space, room], answer
        assert by_id[space]["name"] == "Our garden" and by_id[space]["topic"] == "Plants"
        assert by_id[space]["room_type"] == "m.space" and by_id[space]["num_joined_members"] == 1
        assert [c["state_key"] for c in by_id[space]["children_state"]] == [room, private]
        assert by_id[room]["name"] == "Seeds" and by_id[room]["join_rule"] == "public"

    # The federation route answers only signed requests.
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{our_server_tls.tls_url}/_matrix/federation/v1/hierarchy/{quote(space, safe='')}",
                               ssl=False) as response:
            assert response.status == 401


async def test_our_user_sees_the_hierarchy_of_a_synapse_space(synapse, our_server_tls):
    theirs = await synapse.register("host")
    ours = await register_ours(our_server_tls, "guest")
    there = synapse.server_name
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        space = await s.create_room(preset="public_chat", name="Their space", room_version="10",
                                    creation_content={"type": "m.space"})
        lobby = await s.create_room(preset="public_chat", name="Lobby", room_version="10")
        members = await s.create_room(name="Members", room_version="10", initial_state=[{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
        closed = await s.create_room(preset="private_chat", name="Closed", room_version="10")
        await _add_child(s, space, lobby, there, order="1")
        await _add_child(s, space, members, there, order="2")
        await _add_child(s, space, closed, there, order="3")

        # Not in the space: its public room shows, the restricted and the invite-only ones do not.
        answer = await o.call("GET", _hierarchy_path(space))
        assert _ids(answer) == [space, lobby], answer
        root = answer["rooms"][0]
        assert root["name"] == "Their space" and root["room_type"] == "m.space"
        assert [c["state_key"] for c in root["children_state"]] == [lobby, members, closed]
        assert answer["rooms"][1]["name"] == "Lobby"

        # In the space (joined over federation): the restricted room shows too, with the rooms it admits.
        await o.join(space)
        answer = await o.call("GET", _hierarchy_path(space))
        assert _ids(answer) == [space, lobby, members], answer
        assert answer["rooms"][2]["allowed_room_ids"] == [space]

        # An unknown room of theirs is refused like any room the user may not see.
        status, body = await o.request("GET", _hierarchy_path(f"!nosuchroom:{there}"))
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_a_third_party_checks_our_openid_token(our_server_tls):
    ours = await register_ours(our_server_tls, "caller")
    async with our_client(our_server_tls, ours) as o:
        token = await o.call("POST", f"/_matrix/client/v3/user/{quote(ours.user_id, safe='')}/openid/request_token",
                             {})
    assert token["matrix_server_name"] == our_server_tls.federation_name
    userinfo = f"{our_server_tls.tls_url}/_matrix/federation/v1/openid/userinfo"
    async with aiohttp.ClientSession() as session:
        async with session.get(userinfo, params={"access_token": token["access_token"]}, ssl=False) as response:
            assert response.status == 200
            assert await response.json() == {"sub": ours.user_id}
        async with session.get(userinfo, params={"access_token": "forged"}, ssl=False) as response:
            assert response.status == 401
            assert (await response.json())["errcode"] == "M_UNKNOWN_TOKEN"
