"""Space hierarchies across servers, and OpenID userinfo: with a real Synapse 1.163, and in-process.

- Synapse's user asks Synapse for the hierarchy of a Synapse space whose child is a
  space of ours: Synapse asks us (GET /federation/v1/hierarchy) and shows what we answered.
- Our user asks us for the hierarchy of a public Synapse space they are not in: we ask
  Synapse, and show only what our user may see (a restricted room once they are in the space).
- A third party checks one of our OpenID tokens at our federation userinfo, over HTTPS,
  without a signature (no Synapse endpoint consumes another server's OpenID tokens).
"""

from __future__ import annotations

from typing import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from federation import hierarchy as federation_hierarchy
from federation import keys as federation_keys
from homeserver.appkeys import SERVICES
from homeserver.http import matrix_middleware
from homeserver.protocol.spaces import parse_remote_answer
from homeserver.services.hierarchy import HIERARCHY, HierarchyService
from homeserver.services.pipeline import EventDraft
from homeserver.storage.hierarchy import HierarchyStore
from tests.conftest import _with_database
from tests.federation.interop_helpers import our_client, register_ours
from tests.federation.key_peers import Network, peer
from tests.federation.test_serving import OUR_NAME, Federation, remote_member


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


# Our federation /hierarchy in-process, asked by instances of our server with keys of their own
# (the `fed` set-up of test_serving.py, with the hierarchy route mounted).

@pytest.fixture
async def fed(services, tmp_path, pg_admin_dsn, database_pool) -> AsyncIterator[Federation]:
    network = Network()
    app = web.Application(middlewares=[matrix_middleware])
    app[SERVICES] = services
    federation_keys.install(app, services, network)
    app[HIERARCHY] = HierarchyService(services.server_name, HierarchyStore(services.db), services.state,
                                      services.events)
    app.router.add_routes(federation_hierarchy.routes)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    network.add(OUR_NAME, client)
    databases = [await database_pool.take() for _ in range(2)]
    try:
        async with peer(tmp_path, _with_database(pg_admin_dsn, databases[0]), "remote.test", network) as remote, \
                peer(tmp_path, _with_database(pg_admin_dsn, databases[1]), "other.test", network) as other:
            yield Federation(client, services, {"remote": remote, "other": other})
    finally:
        await client.close()
        for database in databases:
            await database_pool.give_back(database)


async def _local_child(user, space_id: str, child_id: str, **content) -> None:
    r = await user.put(f"/_matrix/client/v3/rooms/{quote(space_id, safe='')}/state/m.space.child/"
                       f"{quote(child_id, safe='')}", {"via": [OUR_NAME], **content})
    assert r.status == 200, r


def _fed_path(room_id: str) -> str:
    return f"/_matrix/federation/v1/hierarchy/{quote(room_id, safe='')}"


async def test_we_answer_as_the_origin_server_may_see(fed, api):
    alice = await api.register("alice")
    remote, other = fed.peers["remote"], fed.peers["other"]
    space = await alice.create_room(preset="public_chat", name="Space", creation_content={"type": "m.space"})
    public = await alice.create_room(preset="public_chat", name="Public")
    shared = await alice.create_room(preset="private_chat", name="Shared with remote")
    restricted = await alice.create_room(name="Restricted", room_version="10", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    secret = await alice.create_room(preset="private_chat", name="Secret")
    for i, child in enumerate([public, shared, restricted, secret]):
        await _local_child(alice, space, child, order=str(i), suggested=child == public)
    # A child we are not in, and one without a valid via.
    await _local_child(alice, space, "!elsewhere:remote.test", order="8")
    r = await alice.put(f"/_matrix/client/v3/rooms/{quote(space, safe='')}/state/m.space.child/"
                        f"{quote('!novia:test.local', safe='')}", {"via": []})
    assert r.status == 200
    # remote.test: a member of the space, and invited to the shared room.
    await remote_member(fed.services, space, remote, "@bob:remote.test")
    await fed.services.pipeline.send(shared, EventDraft(
        "m.room.member", alice.user_id, {"membership": "invite"}, state_key="@bob:remote.test"))

    r = await fed.get(remote, _fed_path(space))
    assert r.status == 200, r
    assert r["room"]["room_id"] == space and r["room"]["name"] == "Space" and r["room"]["num_joined_members"] == 2
    assert [c["state_key"] for c in r["room"]["children_state"]] == [
        public, shared, restricted, secret, "!elsewhere:remote.test"]
    assert [c["room_id"] for c in r["children"]] == [public, shared, restricted]
    assert r["children"][2]["allowed_room_ids"] == [space]
    assert r["inaccessible_children"] == [secret]

    # other.test has no users anywhere: only what is open to all.
    r = await fed.get(other, _fed_path(space))
    assert [c["room_id"] for c in r["children"]] == [public]
    assert r["inaccessible_children"] == [shared, restricted, secret]

    r = await fed.get(remote, _fed_path(space), suggested_only="true")
    assert [c["state_key"] for c in r["room"]["children_state"]] == [public]
    assert [c["room_id"] for c in r["children"]] == [public] and r["inaccessible_children"] == []


async def test_rooms_the_origin_may_not_see_are_404(fed, api):
    alice = await api.register("alice")
    remote = fed.peers["remote"]
    private = await alice.create_room(preset="private_chat", name="Private", creation_content={"type": "m.space"})
    r = await fed.get(remote, _fed_path(private))
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), r
    r = await fed.get(remote, _fed_path("!unknown:test.local"))
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), r
    r = await fed.get(remote, "/_matrix/federation/v1/hierarchy/not-a-room")
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), r
    r = await fed.get(None, _fed_path(private))
    assert r.status == 401, r

    # A public room is open to every server, but not to one its ACL bans.
    public = await alice.create_room(preset="public_chat", name="Public")
    assert (await fed.get(remote, _fed_path(public))).status == 200
    r = await alice.put(f"/_matrix/client/v3/rooms/{quote(public, safe='')}/state/m.room.server_acl/",
                        {"allow": ["*"], "deny": ["remote.test"]})
    assert r.status == 200, r
    r = await fed.get(remote, _fed_path(public))
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), r
    assert (await fed.get(fed.peers["other"], _fed_path(public))).status == 200


def test_other_servers_answers_keep_only_their_well_formed_parts():
    space, child = "!space:remote.test", "!child:remote.test"
    good_child = {"type": "m.space.child", "state_key": child, "content": {"via": ["remote.test"]},
                  "sender": "@a:remote.test", "origin_server_ts": 5}
    answer = parse_remote_answer(space, {
        "room": {"room_id": space, "room_type": "m.space", "name": 7, "topic": "ok", "num_joined_members": "3",
                 "world_readable": "yes", "allowed_room_ids": ["!a:remote.test", 5, "nope"], "extra": "dropped",
                 "children_state": [good_child, {"type": "m.space.child", "state_key": "bad", "content": {"via": ["x"]}},
                                    {"type": "m.space.child", "state_key": child, "content": {"via": []}}, "junk"]},
        "children": [{"room_id": child, "name": "Child", "num_joined_members": 2}, {"room_id": 5}, "junk"],
        "inaccessible_children": ["!gone:remote.test", 3],
    }, suggested_only=False)
    assert answer is not None
    assert answer.room.summary == {"room_id": space, "room_type": "m.space", "topic": "ok", "num_joined_members": 0,
                                   "world_readable": False, "guest_can_join": False,
                                   "allowed_room_ids": ["!a:remote.test"]}
    assert answer.room.children == [good_child]
    assert list(answer.children) == [child] and answer.children[child]["name"] == "Child"
    assert answer.inaccessible == frozenset({"!gone:remote.test"})
    # Not an answer about the room asked for, or not an answer at all.
    for bad in (None, [], {"room": {"room_id": "!other:remote.test"}}, {"room": "x"}, {"children": []}):
        assert parse_remote_answer(space, bad, suggested_only=False) is None
