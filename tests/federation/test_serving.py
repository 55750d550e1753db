"""The federation read routes (federation/serving.py), called by other servers.

Our server ("test.local") serves its key routes and the read routes in-process. Two
more instances of our server, "remote.test" and "other.test", each on a database of
its own, sign the requests with their own keys; our KeyRing fetches those keys from
their /_matrix/key/v2/server through tests/federation/key_peers.py's Network, real
HTTP to the in-process app of that name (the only stand-in: how a server name is
found, which federation/discovery.py does for real). Remote users enter our rooms
as events signed by their server and received through the pipeline, as a join
over federation would be stored.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from federation import keys as federation_keys
from federation import serving
from homeserver.appkeys import SERVICES
from homeserver.http import matrix_middleware
from homeserver.protocol import signing
from homeserver.protocol.auth_rules import auth_types_for_event
from homeserver.protocol.events import Event
from homeserver.protocol.xmatrix import sign_request
from homeserver.services.clock import now_ms
from homeserver.services.pipeline import EventDraft
from tests.client.e2e_helpers import cross_signing_key, device_keys, upload, upload_device_keys
from tests.conftest import _with_database
from tests.federation.key_peers import Network, Peer, peer
from tests.helpers import Api, Response

FED = "/_matrix/federation/v1"
V3 = "/_matrix/client/v3"
OUR_NAME = "test.local"


class Federation:
    """Our server as other servers see it: requests signed by a peer's key."""

    def __init__(self, client: TestClient, services: Any, peers: dict[str, Peer]):
        self.client = client
        self.services = services
        self.peers = peers

    async def request(
        self, peer: Peer | None, method: str, path: str, query: dict[str, Any] | list | None = None,
        body: Any = None,
    ) -> Response:
        target = path + ("?" + urlencode(query, doseq=True) if query else "")
        url = self.client.make_url(target)
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if peer is not None:
            # The signed target is the path and query exactly as sent.
            headers["Authorization"] = sign_request(
                peer.services.signing_key, method, url.raw_path_qs, peer.server_name, OUR_NAME, body
            )
        data = json.dumps(body).encode() if body is not None else None
        async with self.client.session.request(method, url, data=data, headers=headers) as resp:
            text = await resp.text()
            return Response(resp.status, json.loads(text) if text else None, resp.headers)

    async def get(self, peer: Peer | None, path: str, **query: Any) -> Response:
        return await self.request(peer, "GET", path, query or None)

    async def post(self, peer: Peer | None, path: str, body: Any) -> Response:
        return await self.request(peer, "POST", path, body=body)


@pytest.fixture
async def fed(services, tmp_path, pg_admin_dsn, database_pool) -> AsyncIterator[Federation]:
    """Our key and read routes on an app of their own, whose KeyRing reaches the peers
    through the test network; the peers are our server too, on databases of their own."""
    network = Network()
    app = web.Application(middlewares=[matrix_middleware])
    app[SERVICES] = services
    federation_keys.install(app, services, network)
    serving.install(app)
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


# Helpers

async def remote_event(
    services, room_id: str, peer: Peer, sender: str, event_type: str, content: dict,
    state_key: str | None = None, prev_events: list[str] | None = None,
) -> tuple[Event, str | None]:
    """An event of a remote user, signed by its server and received through the pipeline;
    with the rejection reason, if the auth rules rejected it."""
    version = await services.events.get_room_version(room_id)
    prev_ids = prev_events or await services.events.get_forward_extremities(room_id)
    prevs = await services.events.get_events(prev_ids)
    state = await services.state.get_current_state_ids(room_id)
    auth_keys = auth_types_for_event(version, event_type, sender, state_key, content)
    event_json: dict[str, Any] = {
        "type": event_type, "sender": sender, "content": content,
        "room_id": room_id, "origin_server_ts": now_ms(),
        "depth": max(e.depth for e in prevs.values()) + 1,
        "prev_events": list(prevs), "auth_events": [state[k] for k in auth_keys if k in state],
    }
    if state_key is not None:
        event_json["state_key"] = state_key
    signing.add_content_hash(event_json)
    signing.sign_event(event_json, version, peer.server_name, peer.services.signing_key)
    event = signing.event_from_pdu(event_json, version)
    return event, await services.pipeline.receive_remote(event)


async def remote_member(services, room_id: str, peer: Peer, user_id: str, membership: str = "join") -> Event:
    """A membership event of a remote user, as a join over federation would store it."""
    event, rejected = await remote_event(
        services, room_id, peer, user_id, "m.room.member", {"membership": membership}, state_key=user_id)
    assert rejected is None, rejected
    return event


async def stored_json(services, event_id: str) -> dict:
    return json.loads(await services.db.fetchval("SELECT json FROM events WHERE event_id = $1", event_id))


async def set_state(user, room_id: str, event_type: str, content: dict, state_key: str = "") -> str:
    r = await user.put(f"{V3}/rooms/{room_id}/state/{event_type}/{state_key}", content)
    assert r.status == 200, r
    return r["event_id"]


async def room_with_remote_member(fed: Federation, api: Api, **create: Any):
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat", **create)
    await remote_member(fed.services, room_id, fed.peers["remote"], "@bob:remote.test")
    return alice, room_id


def e(event_id: str) -> str:
    return quote(event_id, safe="")


# Authentication and access

async def test_version_needs_no_signature(fed):
    r = await fed.get(None, f"{FED}/version")
    assert r.status == 200
    assert r.body == {"server": {"name": "homeserver", "version": "0.1.0"}}


async def test_unsigned_request_is_401(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    message = await alice.send_text(room_id, "hello")
    r = await fed.get(None, f"{FED}/event/{e(message)}")
    assert r.status == 401 and r.errcode == "M_UNAUTHORIZED"


async def test_signature_by_another_server_is_401(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    message = await alice.send_text(room_id, "hello")
    path = f"{FED}/event/{e(message)}"
    url = fed.client.make_url(path)
    # Signed with other.test's key but claiming to come from remote.test.
    other_key = fed.peers["other"].services.signing_key
    header = sign_request(other_key, "GET", url.raw_path_qs, "remote.test", OUR_NAME, None)
    async with fed.client.session.get(url, headers={"Authorization": header}) as resp:
        assert resp.status == 401


async def test_server_without_members_is_forbidden_everywhere(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    message = await alice.send_text(room_id, "hello")
    other = fed.peers["other"]
    answers = [
        await fed.get(other, f"{FED}/event/{e(message)}"),
        await fed.get(other, f"{FED}/state/{e(room_id)}", event_id=message),
        await fed.get(other, f"{FED}/state_ids/{e(room_id)}", event_id=message),
        await fed.get(other, f"{FED}/event_auth/{e(room_id)}/{e(message)}"),
        await fed.get(other, f"{FED}/backfill/{e(room_id)}", v=message, limit=10),
        await fed.post(other, f"{FED}/get_missing_events/{e(room_id)}",
                       {"earliest_events": [], "latest_events": [message]}),
        await fed.get(other, f"{FED}/timestamp_to_event/{e(room_id)}", ts=0, dir="f"),
    ]
    for r in answers:
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    # An unknown room looks the same as one the server is not in.
    r = await fed.get(fed.peers["remote"], f"{FED}/backfill/{e('!nowhere:test.local')}", v=message, limit=10)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_a_server_whose_users_left_is_forbidden(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    await remote_member(fed.services, room_id, fed.peers["remote"], "@bob:remote.test", "leave")
    message = await alice.send_text(room_id, "after bob left")
    r = await fed.get(fed.peers["remote"], f"{FED}/event/{e(message)}")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_server_acl_denies_a_member_server(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    message = await alice.send_text(room_id, "hello")
    remote = fed.peers["remote"]
    assert (await fed.get(remote, f"{FED}/event/{e(message)}")).status == 200
    await set_state(alice, room_id, "m.room.server_acl", {"allow": ["*"], "deny": ["remote.*"]})
    answers = [
        await fed.get(remote, f"{FED}/event/{e(message)}"),
        await fed.get(remote, f"{FED}/state_ids/{e(room_id)}", event_id=message),
        await fed.get(remote, f"{FED}/backfill/{e(room_id)}", v=message, limit=10),
        await fed.post(remote, f"{FED}/get_missing_events/{e(room_id)}",
                       {"earliest_events": [], "latest_events": [message]}),
        await fed.get(remote, f"{FED}/event_auth/{e(room_id)}/{e(message)}"),
    ]
    for r in answers:
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    # An ACL that allows it again lets it back in.
    await set_state(alice, room_id, "m.room.server_acl", {"allow": ["*.test"], "deny": ["other.test"]})
    assert (await fed.get(remote, f"{FED}/event/{e(message)}")).status == 200


# Retrieving events and state

async def test_event_is_served_exactly_as_stored(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    message = await alice.send_text(room_id, "hello ☃")
    r = await fed.get(fed.peers["remote"], f"{FED}/event/{e(message)}")
    assert r.status == 200, r
    assert r["origin"] == OUR_NAME and isinstance(r["origin_server_ts"], int)
    assert r["pdus"] == [await stored_json(fed.services, message)]
    # The PDU still verifies: its id is its reference hash, our signature checks out.
    pdu = r["pdus"][0]
    version = await fed.services.events.get_room_version(room_id)
    assert signing.compute_event_id(pdu, version) == message
    assert signing.check_content_hash(pdu)
    signing.verify_event_signature(pdu, version, OUR_NAME, signing.key_id(fed.services.signing_key),
                                   fed.services.signing_key.verify_key)


async def test_unknown_event_is_404(fed, api):
    await room_with_remote_member(fed, api)
    r = await fed.get(fed.peers["remote"], f"{FED}/event/{e('$' + 'A' * 43)}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await fed.get(fed.peers["remote"], f"{FED}/event/not-an-id")
    assert r.status == 400


async def test_state_and_state_ids_are_the_state_before_the_event(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    topic = await set_state(alice, room_id, "m.room.topic", {"topic": "first"})
    newer_topic = await set_state(alice, room_id, "m.room.topic", {"topic": "second"})
    current = await fed.services.state.get_current_state_ids(room_id)
    remote = fed.peers["remote"]

    r = await fed.get(remote, f"{FED}/state_ids/{e(room_id)}", event_id=newer_topic)
    assert r.status == 200, r
    expected = {**current, ("m.room.topic", ""): topic}
    assert sorted(r["pdu_ids"]) == sorted(expected.values())
    create = current[("m.room.create", "")]
    assert create in r["auth_chain_ids"]
    # The auth chain holds the auth events of the state, recursively, and nothing else.
    assert topic not in r["auth_chain_ids"] and newer_topic not in r["auth_chain_ids"]
    chain = await _auth_chain_by_walking(fed.services, expected.values())
    assert set(r["auth_chain_ids"]) == chain

    r2 = await fed.get(remote, f"{FED}/state/{e(room_id)}", event_id=newer_topic)
    assert r2.status == 200, r2
    assert sorted(p["content"].get("topic", "") for p in r2["pdus"] if p["type"] == "m.room.topic") == ["first"]
    assert len(r2["pdus"]) == len(r["pdu_ids"]) and len(r2["auth_chain"]) == len(r["auth_chain_ids"])
    version = await fed.services.events.get_room_version(room_id)
    for pdu in r2["pdus"] + r2["auth_chain"]:
        event_id = signing.compute_event_id(pdu, version)
        assert pdu == await stored_json(fed.services, event_id)
    assert {signing.compute_event_id(p, version) for p in r2["auth_chain"]} == set(r["auth_chain_ids"])


async def _auth_chain_by_walking(services, event_ids) -> set[str]:
    """The auth chain as the spec defines it, walked event by event; in rooms whose id
    is their create event's (v12), the create event authorises every event too."""
    chain: set[str] = set()
    todo = list(event_ids)
    while todo:
        loaded = await services.events.get_events(todo)
        for ev in loaded.values():
            if ev.room_version.room_id_from_create_event and ev.type != "m.room.create":
                chain.add("$" + ev.room_id[1:])
        todo = list({a for ev in loaded.values() for a in ev.auth_event_ids if a not in chain})
        chain.update(todo)
    return chain


async def test_state_needs_an_event_of_the_room(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    other_room = await alice.create_room(preset="public_chat")
    elsewhere = await alice.send_text(other_room, "elsewhere")
    remote = fed.peers["remote"]
    r = await fed.get(remote, f"{FED}/state_ids/{e(room_id)}", event_id=elsewhere)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await fed.get(remote, f"{FED}/state_ids/{e(room_id)}")
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"


async def test_event_auth_is_the_auth_chain(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    message = await alice.send_text(room_id, "hello")
    r = await fed.get(fed.peers["remote"], f"{FED}/event_auth/{e(room_id)}/{e(message)}")
    assert r.status == 200, r
    version = await fed.services.events.get_room_version(room_id)
    ids = {signing.compute_event_id(p, version) for p in r["auth_chain"]}
    assert ids == await _auth_chain_by_walking(fed.services, [message])
    assert message not in ids
    types = {p["type"] for p in r["auth_chain"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.member"} <= types


# Backfill and missing events

async def _messages(alice, room_id: str, count: int) -> list[str]:
    return [await alice.send_text(room_id, f"message {i}") for i in range(count)]


async def test_backfill_walks_back_by_depth(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    sent = await _messages(alice, room_id, 6)
    remote = fed.peers["remote"]
    r = await fed.get(remote, f"{FED}/backfill/{e(room_id)}", v=sent[-1], limit=3)
    assert r.status == 200, r
    assert r["origin"] == OUR_NAME
    version = await fed.services.events.get_room_version(room_id)
    ids = [signing.compute_event_id(p, version) for p in r["pdus"]]
    assert ids == [sent[5], sent[4], sent[3]]
    assert r["pdus"][0] == await stored_json(fed.services, sent[5])

    # From an older event: it and what came before it, down to the room's creation.
    r = await fed.get(remote, f"{FED}/backfill/{e(room_id)}", v=sent[1], limit=100)
    ids = [signing.compute_event_id(p, version) for p in r["pdus"]]
    assert ids[:2] == [sent[1], sent[0]] and sent[2] not in ids
    assert r["pdus"][-1]["type"] == "m.room.create"
    depths = [p["depth"] for p in r["pdus"]]
    assert depths == sorted(depths, reverse=True)
    total = await fed.services.db.fetchval(
        "SELECT count(*) FROM events e, events m WHERE m.event_id = $1 AND e.room_id = m.room_id"
        " AND e.depth <= m.depth", sent[1])
    assert len(ids) == total


async def test_backfill_caps_the_limit_and_needs_parameters(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    sent = await _messages(alice, room_id, 3)
    remote = fed.peers["remote"]
    r = await fed.get(remote, f"{FED}/backfill/{e(room_id)}", v=sent[-1])
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    r = await fed.get(remote, f"{FED}/backfill/{e(room_id)}", limit=5)
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    r = await fed.get(remote, f"{FED}/backfill/{e(room_id)}", v=sent[-1], limit=10_000)
    assert r.status == 200 and 0 < len(r["pdus"]) <= 100
    # Several starting points.
    r = await fed.request(remote, "GET", f"{FED}/backfill/{e(room_id)}", [("v", sent[0]), ("v", sent[2]), ("limit", 2)])
    version = await fed.services.events.get_room_version(room_id)
    assert [signing.compute_event_id(p, version) for p in r["pdus"]] == [sent[2], sent[1]]


async def test_get_missing_events_fills_the_gap_oldest_first(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    sent = await _messages(alice, room_id, 6)
    remote = fed.peers["remote"]
    version = await fed.services.events.get_room_version(room_id)
    path = f"{FED}/get_missing_events/{e(room_id)}"

    r = await fed.post(remote, path, {"earliest_events": [sent[0]], "latest_events": [sent[5]]})
    assert r.status == 200, r
    assert [signing.compute_event_id(p, version) for p in r["events"]] == sent[1:5]
    assert r["events"][0] == await stored_json(fed.services, sent[1])

    # The limit keeps the events closest to the latest ones.
    r = await fed.post(remote, path, {"earliest_events": [sent[0]], "latest_events": [sent[5]], "limit": 2})
    assert [signing.compute_event_id(p, version) for p in r["events"]] == sent[3:5]

    # min_depth stops the walk.
    depth_of_2 = (await fed.services.events.get_event(sent[2])).depth
    r = await fed.post(remote, path, {"earliest_events": [], "latest_events": [sent[5]], "min_depth": depth_of_2})
    assert [signing.compute_event_id(p, version) for p in r["events"]] == sent[2:5]

    r = await fed.post(remote, path, {"latest_events": [sent[5]]})
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"


# History visibility for servers

def _redacted(pdu: dict) -> bool:
    return pdu["type"] == "m.room.message" and pdu["content"] == {}


async def test_joined_visibility_redacts_what_came_before_the_servers_join(fed, api):
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}},
    ])
    before = await alice.send_text(room_id, "before bob")
    await remote_member(fed.services, room_id, fed.peers["remote"], "@bob:remote.test")
    after = await alice.send_text(room_id, "after bob")
    remote = fed.peers["remote"]
    version = await fed.services.events.get_room_version(room_id)

    r = await fed.get(remote, f"{FED}/backfill/{e(room_id)}", v=after, limit=5)
    by_id = {signing.compute_event_id(p, version): p for p in r["pdus"]}
    assert by_id[after]["content"]["body"] == "after bob"
    assert _redacted(by_id[before])
    # The redacted form keeps its place in the DAG and still verifies.
    assert signing.compute_event_id(by_id[before], version) == before
    signing.verify_event_signature(by_id[before], version, OUR_NAME, signing.key_id(fed.services.signing_key),
                                   fed.services.signing_key.verify_key)

    r = await fed.get(remote, f"{FED}/event/{e(before)}")
    assert r.status == 200 and _redacted(r["pdus"][0])
    r = await fed.post(remote, f"{FED}/get_missing_events/{e(room_id)}",
                       {"earliest_events": [], "latest_events": [after], "limit": 20})
    missing = {signing.compute_event_id(p, version): p for p in r["events"]}
    assert _redacted(missing[before])


async def test_shared_visibility_shows_everything_to_a_member_server(fed, api):
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat")  # history_visibility shared
    before = await alice.send_text(room_id, "before bob")
    await remote_member(fed.services, room_id, fed.peers["remote"], "@bob:remote.test")
    r = await fed.get(fed.peers["remote"], f"{FED}/event/{e(before)}")
    assert r["pdus"][0]["content"]["body"] == "before bob"


async def test_invited_visibility_shows_events_from_the_invite_on(fed, api):
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "invited"}},
    ])
    before = await alice.send_text(room_id, "before the invite")
    # An invite of a remote user, through the pipeline (the federation invite round trip
    # only adds the invited server's signature).
    await fed.services.pipeline.send(room_id, EventDraft(
        "m.room.member", alice.user_id, {"membership": "invite"}, state_key="@bob:remote.test"))
    invited = await alice.send_text(room_id, "while bob is invited")
    await remote_member(fed.services, room_id, fed.peers["remote"], "@bob:remote.test")
    remote = fed.peers["remote"]
    r = await fed.get(remote, f"{FED}/event/{e(invited)}")
    assert r["pdus"][0]["content"]["body"] == "while bob is invited"
    r = await fed.get(remote, f"{FED}/event/{e(before)}")
    assert _redacted(r["pdus"][0])


async def test_redacted_events_are_served_redacted(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    message = await alice.send_text(room_id, "oops")
    r = await alice.put(f"{V3}/rooms/{room_id}/redact/{message}/t1", {})
    assert r.status == 200, r
    r = await fed.get(fed.peers["remote"], f"{FED}/event/{e(message)}")
    assert _redacted(r["pdus"][0])


# Timestamps

async def test_timestamp_to_event(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    sent = await _messages(alice, room_id, 3)
    remote = fed.peers["remote"]
    middle = await fed.services.events.get_event(sent[1])
    ts = middle.origin_server_ts
    r = await fed.get(remote, f"{FED}/timestamp_to_event/{e(room_id)}", ts=ts, dir="b")
    assert r.status == 200, r
    found = await fed.services.events.get_event(r["event_id"])
    assert found.origin_server_ts == r["origin_server_ts"] <= ts
    r = await fed.get(remote, f"{FED}/timestamp_to_event/{e(room_id)}", ts=ts, dir="f")
    assert r["origin_server_ts"] >= ts
    r = await fed.get(remote, f"{FED}/timestamp_to_event/{e(room_id)}", ts=now_ms() + 3600_000, dir="f")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await fed.get(remote, f"{FED}/timestamp_to_event/{e(room_id)}", ts=0, dir="b")
    assert r.status == 404
    r = await fed.get(remote, f"{FED}/timestamp_to_event/{e(room_id)}", ts=0, dir="x")
    assert r.status == 400


# Queries and the directory

async def test_profile_query(fed, api):
    alice = await api.register("alice")
    r = await alice.put(f"{V3}/profile/{alice.user_id}/displayname", {"displayname": "Alice"})
    assert r.status == 200
    remote = fed.peers["remote"]
    r = await fed.get(remote, f"{FED}/query/profile", user_id=alice.user_id)
    assert r.status == 200 and r.body == {"displayname": "Alice"}
    r = await fed.get(remote, f"{FED}/query/profile", user_id=alice.user_id, field="displayname")
    assert r.body == {"displayname": "Alice"}
    r = await fed.get(remote, f"{FED}/query/profile", user_id=alice.user_id, field="avatar_url")
    assert r.status == 200 and r.body == {}
    for user_id in ("@nobody:test.local", "@bob:remote.test"):
        r = await fed.get(remote, f"{FED}/query/profile", user_id=user_id)
        assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await fed.get(remote, f"{FED}/query/profile")
    assert r.status == 400


async def test_directory_query(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    r = await alice.put(f"{V3}/directory/room/{quote('#room:test.local')}", {"room_id": room_id})
    assert r.status == 200, r
    remote = fed.peers["remote"]
    r = await fed.get(remote, f"{FED}/query/directory", room_alias="#room:test.local")
    assert r.status == 200, r
    assert r.body == {"room_id": room_id, "servers": ["test.local", "remote.test"]}
    r = await fed.get(remote, f"{FED}/query/directory", room_alias="#nothing:test.local")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await fed.get(remote, f"{FED}/query/directory", room_alias="#room:remote.test")
    assert r.status == 404


async def test_public_rooms(fed, api):
    alice = await api.register("alice")
    rooms = []
    for name in ("one", "two", "three"):
        rooms.append(await alice.create_room(preset="public_chat", visibility="public", name=name))
    await alice.create_room(preset="private_chat", name="hidden")
    remote = fed.peers["remote"]
    r = await fed.get(remote, f"{FED}/publicRooms", limit=2)
    assert r.status == 200, r
    assert r["total_room_count_estimate"] == 3 and len(r["chunk"]) == 2 and "next_batch" in r.body
    r2 = await fed.get(remote, f"{FED}/publicRooms", limit=2, since=r["next_batch"])
    assert len(r2["chunk"]) == 1 and "prev_batch" in r2.body
    assert {c["room_id"] for c in r["chunk"] + r2["chunk"]} == set(rooms)
    r = await fed.post(remote, f"{FED}/publicRooms", {"filter": {"generic_search_term": "two"}})
    assert r.status == 200 and [c["name"] for c in r["chunk"]] == ["two"]
    assert (await fed.get(None, f"{FED}/publicRooms")).status == 401


# Devices and keys

async def test_user_devices_and_key_queries(fed, api):
    import nacl.signing

    alice = await api.register("alice")
    device_key = await upload_device_keys(alice)
    master = nacl.signing.SigningKey.generate()
    self_signing = nacl.signing.SigningKey.generate()
    r = await alice.post(f"{V3}/keys/device_signing/upload", {
        "master_key": cross_signing_key(alice, "master", master),
        "self_signing_key": cross_signing_key(alice, "self_signing", self_signing, master),
    })
    assert r.status == 200, r
    r = await upload(alice, {"one_time_keys": {"signed_curve25519:AAAA": {"key": "otk"}}})
    assert r.status == 200, r
    remote = fed.peers["remote"]

    r = await fed.get(remote, f"{FED}/user/devices/{quote(alice.user_id)}")
    assert r.status == 200, r
    assert r["user_id"] == alice.user_id and r["stream_id"] > 0
    # Another user's device change moves the stream, not alice's stream_id (her last change).
    bob = await api.register("bob")
    await upload_device_keys(bob)
    again = await fed.get(remote, f"{FED}/user/devices/{quote(alice.user_id)}")
    assert again["stream_id"] == r["stream_id"]
    assert api.services.e2e_keys.stream.current() > r["stream_id"]
    (device,) = r["devices"]
    assert device["device_id"] == alice.device_id
    assert device["keys"]["keys"] == device_keys(alice, device_key)["keys"]
    assert "device_display_name" not in device
    assert r["master_key"]["usage"] == ["master"] and r["self_signing_key"]["usage"] == ["self_signing"]

    r = await fed.post(remote, f"{FED}/user/keys/query", {"device_keys": {alice.user_id: [], "@x:remote.test": []}})
    assert r.status == 200, r
    assert set(r["device_keys"]) == {alice.user_id}
    assert r["device_keys"][alice.user_id][alice.device_id]["keys"] == device_keys(alice, device_key)["keys"]
    assert "device_display_name" not in r["device_keys"][alice.user_id][alice.device_id].get("unsigned", {})
    assert alice.user_id in r["master_keys"] and alice.user_id in r["self_signing_keys"]
    assert "user_signing_keys" not in r.body

    r = await fed.post(remote, f"{FED}/user/keys/claim",
                       {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}})
    assert r.status == 200, r
    assert r.body == {"one_time_keys": {alice.user_id: {alice.device_id: {"signed_curve25519:AAAA": {"key": "otk"}}}}}
    r = await fed.post(remote, f"{FED}/user/keys/claim",
                       {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}})
    assert r.body == {"one_time_keys": {}}

    r = await fed.get(remote, f"{FED}/user/devices/{quote('@bob:remote.test')}")
    assert r.status == 404
    r = await fed.post(remote, f"{FED}/user/keys/query", {"device_keys": "nope"})
    assert r.status == 400


# The graph: forks, rejected events, older room versions, cycles

async def test_backfill_and_missing_events_follow_forks(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    root = await alice.send_text(room_id, "root")
    base = await alice.send_text(room_id, "base")
    remote = fed.peers["remote"]
    # bob's server sends a message off `root`, not knowing `base` yet: the room forks.
    fork, rejected = await remote_event(
        fed.services, room_id, remote, "@bob:remote.test", "m.room.message",
        {"msgtype": "m.text", "body": "fork"}, prev_events=[root])
    assert rejected is None
    # The next local event merges the two forward extremities.
    merge = await alice.send_text(room_id, "merge")
    merged = await fed.services.events.get_event(merge)
    assert set(merged.prev_event_ids) == {fork.event_id, base}
    version = await fed.services.events.get_room_version(room_id)

    r = await fed.get(remote, f"{FED}/backfill/{e(room_id)}", v=merge, limit=4)
    ids = [signing.compute_event_id(p, version) for p in r["pdus"]]
    assert ids[0] == merge and set(ids[1:3]) == {fork.event_id, base} and ids[3] == root

    r = await fed.post(remote, f"{FED}/get_missing_events/{e(room_id)}",
                       {"earliest_events": [base, root], "latest_events": [merge]})
    assert [signing.compute_event_id(p, version) for p in r["events"]] == [fork.event_id]


async def test_rejected_events_are_never_served(fed, api):
    alice, room_id = await room_with_remote_member(fed, api)
    remote = fed.peers["remote"]
    # carol of remote.test never joined: her message is rejected on receipt.
    bad, rejected = await remote_event(
        fed.services, room_id, remote, "@carol:remote.test", "m.room.message",
        {"msgtype": "m.text", "body": "not a member"})
    assert rejected is not None
    after = await alice.send_text(room_id, "after")
    r = await fed.get(remote, f"{FED}/event/{e(bad.event_id)}")
    assert r.status == 404
    r = await fed.get(remote, f"{FED}/state_ids/{e(room_id)}", event_id=bad.event_id)
    assert r.status == 404
    r = await fed.get(remote, f"{FED}/backfill/{e(room_id)}", v=[after, bad.event_id], limit=100)
    version = await fed.services.events.get_room_version(room_id)
    assert bad.event_id not in {signing.compute_event_id(p, version) for p in r["pdus"]}


async def test_an_older_room_version_cites_its_create_event(fed, api):
    alice, room_id = await room_with_remote_member(fed, api, room_version="10")
    message = await alice.send_text(room_id, "hello")
    remote = fed.peers["remote"]
    version = await fed.services.events.get_room_version(room_id)
    r = await fed.get(remote, f"{FED}/event_auth/{e(room_id)}/{e(message)}")
    ids = {signing.compute_event_id(p, version) for p in r["auth_chain"]}
    assert ids == await _auth_chain_by_walking(fed.services, [message])
    assert "m.room.create" in {p["type"] for p in r["auth_chain"]}
    r = await fed.get(remote, f"{FED}/event/{e(message)}")
    assert r["pdus"] == [await stored_json(fed.services, message)]


async def test_auth_chain_walk_survives_a_cycle(fed, api):
    from homeserver.storage.event_graph import EventGraphStore

    alice, room_id = await room_with_remote_member(fed, api, room_version="10")
    message = await alice.send_text(room_id, "hello")
    create = (await fed.services.state.get_current_state_ids(room_id))[("m.room.create", "")]
    # A peer could send auth_events that loop; the walk must still end.
    await fed.services.db.execute("INSERT INTO event_auth (event_id, auth_event_id) VALUES ($1, $2)", create, message)
    graph = EventGraphStore(fed.services.db, fed.services.state)
    chain = await graph.auth_chain_ids([message])
    assert create in chain and message in chain
    assert await graph.auth_chain_ids([]) == set()
    assert message in await graph.auth_chain_ids([message], include_given=True)
