"""PDUs received from a peer that may lie: the spec's checks on receipt, seen from our clients.

Our server runs in-process (the ``api`` fixture, "test.local"); the peer is a real
HTTPS server on 127.0.0.1 with its own key (tests/federation/fake_peer.py) that
joins our rooms through make_join/send_join and sends signed transactions. Our
server fetches the peer's keys and whatever the events lack (/event_auth,
/event, /get_missing_events, /state_ids) from it with the real FederationClient.

Spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import quote

import pytest

from federation.inbound import MAX_AUTH_FETCH_ROUNDS
from homeserver.protocol import signing
from homeserver.protocol.auth_rules import auth_types_for_event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from tests.federation.fake_peer import FakePeer, PeerRoom
from tests.helpers import Api, User

V3 = "/_matrix/client/v3"


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"federation": {"verify_certificates": False, "ip_range_allowlist": ["127.0.0.1/32"],
                           "trusted_key_servers": []}}


@pytest.fixture
async def peer(api: Api, tmp_path):
    fake = FakePeer(tmp_path / "peer", str(api.client.make_url("")), api.services.server_name)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@dataclasses.dataclass
class Setup:
    api: Api
    peer: FakePeer
    alice: User  # ours, the room's creator
    room_id: str
    room: PeerRoom  # the peer's view
    bob: str  # the peer's user, joined

    async def send(self, *pdus: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Send PDUs in one transaction; the per-PDU results."""
        r = await self.peer.send_transaction(list(pdus), **kwargs)
        assert r.status == 200, r
        return r["pdus"]

    def id(self, pdu: dict[str, Any]) -> str:
        return self.room.event_id(pdu)

    async def stored(self, event_id: str) -> dict[str, Any] | None:
        row = await self.api.services.db.fetchrow(
            "SELECT json, rejected_reason, outlier, internal_json FROM events WHERE event_id = $1", event_id)
        if row is None:
            return None
        internal = row["internal_json"]
        return {"json": json.loads(row["json"]), "rejected": row["rejected_reason"], "outlier": row["outlier"],
                "internal": json.loads(internal) if isinstance(internal, str) else (internal or {})}

    async def messages(self) -> list[dict[str, Any]]:
        """The whole room as /messages shows it, oldest first."""
        r = await self.alice.get(f"{V3}/rooms/{quote(self.room_id)}/messages",
                                 params={"dir": "b", "limit": "1000"})
        assert r.status == 200, r
        return list(reversed(r["chunk"]))

    async def timeline_ids(self) -> list[str]:
        return [e["event_id"] for e in await self.messages()]

    async def sync_timeline(self, since: str | None = None) -> tuple[list[dict[str, Any]], str]:
        r = await self.alice.sync(since=since)
        room = r.body.get("rooms", {}).get("join", {}).get(self.room_id, {})
        return room.get("timeline", {}).get("events", []), r["next_batch"]

    async def state_event(self, event_type: str, state_key: str = "") -> Any:
        r = await self.alice.get(f"{V3}/rooms/{quote(self.room_id)}/state/{event_type}/{quote(state_key)}")
        return r

    async def state(self) -> dict[tuple[str, str], str]:
        r = await self.alice.get(f"{V3}/rooms/{quote(self.room_id)}/state")
        assert r.status == 200, r
        return {(e["type"], e["state_key"]): e["event_id"] for e in r.body}


async def _setup(api: Api, peer: FakePeer, room_version: str) -> Setup:
    """Alice (ours) makes a public room; bob of the peer joins it over federation."""
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat", room_version=room_version)
    bob = peer.user("bob")
    room = await peer.join(room_id, bob)
    return Setup(api, peer, alice, room_id, room, bob)


@pytest.fixture(params=["10", "12"])
async def setup(request, api: Api, peer: FakePeer) -> Setup:
    return await _setup(api, peer, request.param)


# --- Good events and idempotent transactions ----------------------------------------------


async def test_a_good_message_is_accepted_and_shown(setup: Setup):
    _, since = await setup.sync_timeline()
    pdu = setup.room.message(setup.bob, "hello from the peer")
    results = await setup.send(pdu)
    assert results == {setup.id(pdu): {}}
    [shown] = [e for e in await setup.messages() if e["event_id"] == setup.id(pdu)]
    assert shown["content"]["body"] == "hello from the peer"
    assert shown["sender"] == setup.bob
    timeline, _ = await setup.sync_timeline(since)
    assert [e["event_id"] for e in timeline] == [setup.id(pdu)]


async def test_a_retried_transaction_is_answered_identically_and_processed_once(setup: Setup):
    pdu = setup.room.message(setup.bob, "once")
    first = await setup.peer.send_transaction([pdu], txn_id="retry1")
    again = await setup.peer.send_transaction([pdu], txn_id="retry1")
    assert first.status == again.status == 200
    assert first.body == again.body == {"pdus": {setup.id(pdu): {}}}
    # The same id with other PDUs is still the first transaction: answered as it was, nothing new done.
    other = setup.room.message(setup.bob, "never processed")
    third = await setup.peer.send_transaction([other], txn_id="retry1")
    assert third.body == first.body
    ids = await setup.timeline_ids()
    assert ids.count(setup.id(pdu)) == 1
    assert await setup.stored(setup.id(other)) is None
    count = await setup.api.services.db.fetchval(
        "SELECT count(*) FROM events WHERE event_id = $1", setup.id(pdu))
    assert count == 1


# --- Step 2: signatures --------------------------------------------------------------------


async def _assert_dropped(setup: Setup, pdu: dict[str, Any], reason: str) -> str:
    results = await setup.send(pdu)
    error = results[setup.id(pdu)].get("error", "")
    assert reason in error, results
    assert await setup.stored(setup.id(pdu)) is None
    assert setup.id(pdu) not in await setup.timeline_ids()
    return error


async def test_a_bad_signature_drops_the_event(setup: Setup):
    pdu = setup.room.message(setup.bob, "forged", advance=False)
    decoy = setup.room.message(setup.bob, "decoy", advance=False)
    key_id = signing.key_id(setup.peer.key)
    pdu["signatures"][setup.peer.server_name][key_id] = decoy["signatures"][setup.peer.server_name][key_id]
    await _assert_dropped(setup, pdu, "signature")


async def test_an_unsigned_event_is_dropped(setup: Setup):
    pdu = setup.room.message(setup.bob, "unsigned", sign=False, advance=False)
    assert "signatures" not in pdu
    await _assert_dropped(setup, pdu, "signature")


async def test_a_signature_by_a_key_the_server_does_not_publish_is_dropped(setup: Setup):
    rogue = signing.generate_signing_key("rogue")
    pdu = setup.room.message(setup.bob, "rogue key", key=rogue, advance=False)
    await _assert_dropped(setup, pdu, "")


# --- Step 3: content hash ------------------------------------------------------------------


async def test_a_wrong_content_hash_stores_the_event_redacted(setup: Setup):
    pdu = setup.room.message(setup.bob, "original", advance=False)
    pdu["content"] = {"msgtype": "m.text", "body": "tampered after signing"}
    event_id = setup.id(pdu)  # the reference hash covers only the redacted event
    results = await setup.send(pdu)
    assert event_id in results
    stored = await setup.stored(event_id)
    assert stored is not None and stored["json"]["content"] == {}
    for shown in await setup.messages():
        assert "tampered" not in json.dumps(shown)


# --- Steps 4 and 5: the auth rules ---------------------------------------------------------


def _levels(setup: Setup) -> dict[str, Any]:
    return setup.room.events[setup.room.state[("m.room.power_levels", "")]]["content"]


async def test_a_message_of_a_sender_who_is_not_joined_is_rejected(setup: Setup):
    mallory = setup.peer.user("mallory")
    pdu = setup.room.message(mallory, "let me in", advance=False)
    results = await setup.send(pdu)
    assert "rejected" in results[setup.id(pdu)]["error"]
    stored = await setup.stored(setup.id(pdu))
    assert stored is None or stored["rejected"]
    assert setup.id(pdu) not in await setup.timeline_ids()


async def test_a_power_levels_change_by_an_unprivileged_user_is_rejected_and_never_state(setup: Setup):
    before = await setup.state()
    content = json.loads(json.dumps(_levels(setup)))
    content.setdefault("users", {})[setup.bob] = 100
    pdu = setup.room.build(setup.bob, "m.room.power_levels", content, state_key="", advance=False)
    results = await setup.send(pdu)
    assert "rejected" in results[setup.id(pdu)]["error"]
    assert (await setup.stored(setup.id(pdu)))["rejected"]
    assert await setup.state() == before
    levels = await setup.state_event("m.room.power_levels")
    assert setup.bob not in levels.body.get("users", {})

    # Events citing the rejected event as an auth event are rejected too.
    auth = [a if a != setup.room.state[("m.room.power_levels", "")] else setup.id(pdu)
            for a in setup.room.build(setup.bob, "m.room.topic", {"topic": "x"}, state_key="",
                                      advance=False)["auth_events"]]
    topic = setup.room.build(setup.bob, "m.room.topic", {"topic": "on a rejected base"}, state_key="",
                             auth_events=auth, advance=False)
    message = setup.room.message(setup.bob, "on a rejected base", auth_events=auth, advance=False)
    results = await setup.send(topic, message)
    for pdu in (topic, message):
        assert "rejected" in results[setup.id(pdu)]["error"], results
        assert setup.id(pdu) not in await setup.timeline_ids()
    assert await setup.state() == before


async def test_a_ban_by_a_non_member_is_rejected(setup: Setup):
    before = await setup.state()
    mallory = setup.peer.user("mallory")
    pdu = setup.room.build(mallory, "m.room.member", {"membership": "ban"}, state_key=setup.alice.user_id,
                           advance=False)
    results = await setup.send(pdu)
    assert "rejected" in results[setup.id(pdu)]["error"]
    assert await setup.state() == before
    member = await setup.state_event("m.room.member", setup.alice.user_id)
    assert member.body["membership"] == "join"
    # Alice can still talk.
    await setup.alice.send_text(setup.room_id, "still here")


# --- Forged origins and request authentication ---------------------------------------------


async def test_an_event_of_another_server_not_signed_by_it_is_dropped(setup: Setup, tmp_path):
    other = FakePeer(tmp_path / "other", setup.peer.target_url, setup.peer.target_name, key_version="other1")
    await other.start()
    try:
        eve = other.user("eve")
        await other.join(setup.room_id, eve)
        # The peer learns the room's state with eve joined, then speaks for her.
        setup.room = await setup.peer.join(setup.room_id, setup.peer.user("bob2"))
        forged = setup.room.message(eve, "I am eve, honest", advance=False)
        assert list(forged["signatures"]) == [setup.peer.server_name]
        await _assert_dropped(setup, forged, "signature")
        # Signed under eve's server name with the peer's own key: still not eve's server.
        forged_as = setup.room.message(eve, "really eve", sign_as=other.server_name, advance=False)
        await _assert_dropped(setup, forged_as, "")
        # Eve's own server can speak for her.
        genuine = other.rooms[setup.room_id].message(eve, "eve here")
        r = await other.send_transaction([genuine])
        assert r.status == 200 and r["pdus"] == {other.rooms[setup.room_id].event_id(genuine): {}}, r
    finally:
        await other.close()


async def test_a_transaction_for_another_destination_is_refused(setup: Setup):
    pdu = setup.room.message(setup.bob, "not for you", advance=False)
    r = await setup.peer.send_transaction([pdu], destination="elsewhere.example")
    assert r.status == 401 and r.errcode == "M_UNAUTHORIZED"
    assert await setup.stored(setup.id(pdu)) is None


async def test_a_transaction_without_x_matrix_is_refused(setup: Setup):
    pdu = setup.room.message(setup.bob, "anonymous", advance=False)
    r = await setup.peer.send_transaction([pdu], signed=False)
    assert r.status == 401 and r.errcode == "M_UNAUTHORIZED"
    assert await setup.stored(setup.id(pdu)) is None


async def test_a_transaction_signed_with_another_key_is_refused(setup: Setup):
    pdu = setup.room.message(setup.bob, "rogue request", advance=False)
    r = await setup.peer.send_transaction([pdu], key=signing.generate_signing_key("rogue"))
    assert r.status == 401 and r.errcode == "M_UNAUTHORIZED"
    assert await setup.stored(setup.id(pdu)) is None


# --- Step 1: format ------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    "depth_2_63", "negative_depth", "float", "huge", "too_many_prev_events", "too_many_auth_events",
])
async def test_a_badly_formed_event_is_dropped_with_a_format_error(setup: Setup, case: str):
    room = setup.room
    kwargs: dict[str, Any] = {"advance": False}
    content: dict[str, Any] = {"msgtype": "m.text", "body": case}
    if case == "depth_2_63":
        kwargs["depth"] = 2**63
    elif case == "negative_depth":
        kwargs["depth"] = -1
    elif case == "float":
        content["weight"] = 1.5
    elif case == "huge":
        content["body"] = "x" * 70_000
    elif case == "too_many_prev_events":
        kwargs["prev_events"] = room.tip + [f"$fake{i}" for i in range(20)]
    elif case == "too_many_auth_events":
        auth = room.message(setup.bob, "probe", advance=False)["auth_events"]
        kwargs["auth_events"] = auth + [f"$fake{i}" for i in range(11 - len(auth))]
    pdu = room.build(setup.bob, "m.room.message", content, **kwargs)
    await _assert_dropped(setup, pdu, "bad format")


# --- Auth chains: huge, cyclic, from another room -------------------------------------------


def _bogus_levels_chain(setup: Setup, length: int) -> list[dict[str, Any]]:
    """Power levels events of bob, each citing the one before as its power levels auth event;
    the first is an unprivileged change, so every one of them fails."""
    room = setup.room
    real_levels = room.state[("m.room.power_levels", "")]
    content = json.loads(json.dumps(_levels(setup)))
    chain: list[dict[str, Any]] = []
    previous = real_levels
    for i in range(length):
        content = {**content, "users": {**content.get("users", {}), setup.bob: 100}, "events_default": i % 2}
        auth = [previous if a == real_levels else a for a in _auth_ids(setup, "m.room.power_levels")]
        pdu = room.build(setup.bob, "m.room.power_levels", content, state_key="", auth_events=auth, advance=False)
        chain.append(pdu)
        previous = room.event_id(pdu)
    return chain


def _auth_ids(setup: Setup, event_type: str, sender: str | None = None) -> list[str]:
    """The auth events selection for an event of bob's (or sender's), from the peer's state."""
    room = setup.room
    state = room.state
    keys = auth_types_for_event(room.version, event_type, sender or setup.bob,
                                "" if event_type != "m.room.message" else None, {})
    return [state[k] for k in keys if k in state]


def _citing(setup: Setup, levels_id: str) -> dict[str, Any]:
    """A message of bob's citing ``levels_id`` as its power levels."""
    real_levels = setup.room.state[("m.room.power_levels", "")]
    auth = [levels_id if a == real_levels else a for a in _auth_ids(setup, "m.room.message")]
    return setup.room.message(setup.bob, "on a long chain", auth_events=auth, advance=False)


async def test_an_auth_chain_1000_deep_from_event_auth_is_handled_and_the_event_rejected(setup: Setup):
    chain = _bogus_levels_chain(setup, 1000)
    pdu = _citing(setup, setup.id(chain[-1]))
    results = await setup.send(pdu)
    assert "rejected" in results[setup.id(pdu)]["error"], results
    assert setup.peer.count("/_matrix/federation/v1/event_auth/") == 1
    assert setup.id(pdu) not in await setup.timeline_ids()
    levels = await setup.state_event("m.room.power_levels")
    assert setup.bob not in levels.body.get("users", {})


async def test_an_auth_chain_1000_deep_only_through_event_is_bounded(setup: Setup):
    chain = _bogus_levels_chain(setup, 1000)
    pdu = _citing(setup, setup.id(chain[-1]))
    # The peer will not answer /event_auth: each auth event must be fetched alone.
    setup.peer.event_auth_overrides[setup.id(pdu)] = {"auth_chain": []}
    results = await setup.send(pdu)
    assert "rejected" in results[setup.id(pdu)]["error"], results
    assert setup.peer.count("/_matrix/federation/v1/event/") <= 2 * MAX_AUTH_FETCH_ROUNDS
    assert setup.id(pdu) not in await setup.timeline_ids()


@pytest.mark.parametrize("served_by", ["event_auth", "event"])
async def test_auth_events_citing_each_other_are_rejected_without_looping(api: Api, peer: FakePeer, served_by: str):
    # Only room versions 1 and 2, whose event ids are chosen, not hashed, allow a cycle.
    setup = await _setup(api, peer, "1")
    room = setup.room
    a_id, b_id = f"$cycle-a:{peer.server_name}", f"$cycle-b:{peer.server_name}"
    real_levels = room.state[("m.room.power_levels", "")]
    levels = _levels(setup)

    def auth_with(levels_id: str) -> list[str]:
        return [levels_id if a == real_levels else a for a in _auth_ids(setup, "m.room.power_levels")]

    room.build(setup.bob, "m.room.power_levels", levels, state_key="", auth_events=auth_with(b_id),
               extra={"event_id": a_id}, advance=False)
    room.build(setup.bob, "m.room.power_levels", levels, state_key="", auth_events=auth_with(a_id),
               extra={"event_id": b_id}, advance=False)
    pdu = _citing(setup, a_id)
    if served_by == "event":
        peer.event_auth_overrides[setup.id(pdu)] = {"auth_chain": []}
    results = await setup.send(pdu)
    assert "rejected" in results[setup.id(pdu)]["error"], results
    assert peer.count("/_matrix/federation/v1/event/") <= 2
    for event_id in (a_id, b_id):
        stored = await setup.stored(event_id)
        assert stored is None or stored["rejected"]
    assert setup.id(pdu) not in await setup.timeline_ids()
    assert (await setup.state())[("m.room.power_levels", "")] == real_levels


async def test_auth_events_from_another_room_are_rejected_and_not_stored(setup: Setup):
    """MSC4307: an event's auth chain stays in its room."""
    other = setup.peer.new_room(setup.bob, setup.room.version)
    foreign_levels = other.state[("m.room.power_levels", "")]
    pdu = _citing(setup, foreign_levels)
    results = await setup.send(pdu)
    assert "rejected" in results[setup.id(pdu)]["error"], results
    for event_id in other.events:
        assert await setup.stored(event_id) is None, event_id
    assert setup.id(pdu) not in await setup.timeline_ids()


# --- Transaction limits ---------------------------------------------------------------------


async def test_a_transaction_over_the_limits_is_refused(setup: Setup):
    r = await setup.peer.send_transaction([{} for _ in range(51)])
    assert r.status == 400, r
    r = await setup.peer.send_transaction([], [{"edu_type": "m.typing", "content": {}} for _ in range(101)])
    assert r.status == 400, r
    r = await setup.peer.send_transaction([{} for _ in range(50)],
                                          [{"edu_type": "m.nothing", "content": {}} for _ in range(100)])
    assert r.status == 200, r


# --- Step 6: soft failure --------------------------------------------------------------------


async def test_an_event_of_a_user_banned_since_its_prev_events_is_soft_failed(setup: Setup):
    carol = setup.peer.user("carol")
    setup.room = await setup.peer.join(setup.room_id, carol)
    r = await setup.alice.post(f"{V3}/rooms/{quote(setup.room_id)}/ban", {"user_id": carol})
    assert r.status == 200, r
    _, since = await setup.sync_timeline()
    # The peer has not seen the ban: carol speaks on top of her join.
    pdu = setup.room.message(carol, "I did not see any ban")
    results = await setup.send(pdu)
    assert results == {setup.id(pdu): {}}
    stored = await setup.stored(setup.id(pdu))
    assert stored is not None and not stored["rejected"]
    timeline, since = await setup.sync_timeline(since)
    assert setup.id(pdu) not in [e["event_id"] for e in timeline]
    assert setup.id(pdu) not in await setup.timeline_ids()
    member = await setup.state_event("m.room.member", carol)
    assert member.body["membership"] == "ban"
    # The room goes on; bob's next message is shown.
    good = setup.room.message(setup.bob, "bob is still welcome", prev_events=setup.room.tip)
    assert await setup.send(good) == {setup.id(good): {}}
    timeline, _ = await setup.sync_timeline(since)
    assert [e["event_id"] for e in timeline] == [setup.id(good)]


# --- Missing prev events ---------------------------------------------------------------------


async def test_missing_prev_events_are_fetched_through_get_missing_events(setup: Setup):
    hidden = [setup.room.message(setup.bob, f"unsent {i}") for i in range(3)]
    last = setup.room.message(setup.bob, "the one sent")
    results = await setup.send(last)
    assert results == {setup.id(last): {}}
    assert setup.peer.count("/_matrix/federation/v1/get_missing_events/") == 1
    assert setup.peer.count("/_matrix/federation/v1/state_ids/") == 0
    ids = await setup.timeline_ids()
    expected = [setup.id(p) for p in hidden + [last]]
    assert [i for i in ids if i in expected] == expected


@pytest.mark.parametrize("gap", ["no_missing_events", "longer_than_get_missing_events"])
async def test_a_gap_is_resolved_through_state_ids_and_event(setup: Setup, gap: str):
    room = setup.room
    rename = room.build(setup.bob, "m.room.member", {"membership": "join", "displayname": "Bobby"},
                        state_key=setup.bob)
    # Dave's join is in no auth chain of bob's events: only the state at the gap tells of it.
    dave = setup.peer.user("dave")
    dave_join = room.build(dave, "m.room.member", {"membership": "join"}, state_key=dave)
    for i in range(3 if gap == "no_missing_events" else 30):
        room.message(setup.bob, f"unsent {i}")
    if gap == "no_missing_events":
        setup.peer.missing_events_answer = lambda body: {"events": []}
    last = room.message(setup.bob, "after the gap")
    results = await setup.send(last)
    assert results == {setup.id(last): {}}
    assert setup.peer.count("/_matrix/federation/v1/state_ids/") >= 1
    assert f"/_matrix/federation/v1/event/{quote(setup.id(dave_join), safe='')}" in [
        p for _, p in setup.peer.requests]
    assert setup.id(last) in await setup.timeline_ids()
    state = await setup.state()
    assert state[("m.room.member", setup.bob)] == setup.id(rename)
    assert state[("m.room.member", dave)] == setup.id(dave_join)
    member = await setup.state_event("m.room.member", setup.bob)
    assert member.body["displayname"] == "Bobby"
    # The room goes on from there, both ways.
    await setup.alice.send_text(setup.room_id, "welcome back")
    reply = room.message(setup.bob, "thanks")
    assert await setup.send(reply) == {setup.id(reply): {}}
    assert (await setup.timeline_ids())[-1] == setup.id(reply)


# --- Rooms we are not in ------------------------------------------------------------------


async def _invited_to_peer_room(api: Api, peer: FakePeer, room_version: str) -> tuple[User, PeerRoom, str]:
    """A room of the peer's, bob's, to which alice (ours) is invited over /v2/invite."""
    alice = await api.register("alice")
    bob = peer.user("bob")
    room = peer.new_room(bob, KNOWN_ROOM_VERSIONS[room_version])
    await peer.invite(room, bob, alice.user_id)
    return alice, room, bob


async def _stored_ids(api: Api, room_id: str) -> set[str]:
    rows = await api.services.db.fetch("SELECT event_id FROM events WHERE room_id = $1", room_id)
    return {r["event_id"] for r in rows}


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_pdus_of_a_room_we_are_only_invited_to_are_dropped(api: Api, peer: FakePeer, room_version: str):
    # The peer answers /event_auth, /get_missing_events and /state_ids for anyone: taking its
    # events would seed the room's state from the peer's word instead of a join's answer.
    alice, room, bob = await _invited_to_peer_room(api, peer, room_version)
    invite_id = room.tip[0]
    before = await _stored_ids(api, room.room_id)
    assert before == {invite_id}
    message = room.message(bob, "sent to a server not in the room")
    r = await peer.send_transaction([room.events[invite_id], message])
    assert r.status == 200, r
    for event_id in (invite_id, room.event_id(message)):
        assert "not in the room" in r["pdus"][event_id]["error"], r
    assert await _stored_ids(api, room.room_id) == before
    # The room's state here is still only the out-of-band invite.
    current = await api.services.db.fetch("SELECT event_id FROM current_state WHERE room_id = $1", room.room_id)
    assert [r["event_id"] for r in current] == [invite_id]
    invites = (await alice.sync()).body["rooms"]["invite"]
    assert list(invites) == [room.room_id]


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_events_sent_while_our_join_is_under_way_are_kept_for_after_it(
        api: Api, peer: FakePeer, room_version: str):
    alice, room, bob = await _invited_to_peer_room(api, peer, room_version)
    sent_meanwhile: list[str] = []

    async def send_before_answering(room: PeerRoom, join: dict[str, Any]) -> None:
        # The resident server has taken the join and sends the room's next event to us
        # before our send_join has its answer.
        message = room.message(bob, "right after your join")
        sent_meanwhile.append(room.event_id(message))
        r = await peer.send_transaction([message])
        assert r.status == 200 and r["pdus"] == {sent_meanwhile[0]: {}}, r

    peer.on_send_join = send_before_answering
    r = await alice.post(f"{V3}/join/{quote(room.room_id)}", {}, params={"server_name": peer.server_name})
    assert r.status == 200, r
    assert sent_meanwhile
    messages = await alice.get(f"{V3}/rooms/{quote(room.room_id)}/messages", params={"dir": "b", "limit": "10"})
    assert messages.status == 200, messages
    newest = messages["chunk"][0]
    assert (newest["event_id"], newest["content"]["body"]) == (sent_meanwhile[0], "right after your join")
    assert messages["chunk"][1]["content"]["membership"] == "join"
    # Taken as a live event of the room, from the state the join brought.
    row = await api.services.db.fetchrow(
        "SELECT outlier, rejected_reason FROM events WHERE event_id = $1", sent_meanwhile[0])
    assert (row["outlier"], row["rejected_reason"]) == (False, None)


# --- Two of our own servers ------------------------------------------------------------------


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_two_of_our_servers_share_a_room(start_our_server_tls, room_version: str):
    from tests.federation.interop_helpers import invited_to, our_client, register_ours, timeline_events

    a = await start_our_server_tls(log_level="INFO")
    b = await start_our_server_tls(log_level="INFO")
    anna = await register_ours(a, f"anna{room_version}")
    bert = await register_ours(b, f"bert{room_version}")
    async with our_client(a, anna) as on_a, our_client(b, bert) as on_b:
        room_id = await on_a.create_room(preset="private_chat", room_version=room_version, name="Two of ours")
        await on_a.invite(room_id, bert.user_id)
        invite = await on_b.sync_until(invited_to(room_id), timeout=60)
        names = [e["content"].get("name") for e in invite["invite_state"]["events"] if e["type"] == "m.room.name"]
        assert names == ["Two of ours"]
        await on_b.join(room_id, via=[a.federation_name])
        await on_a.sync_until(timeline_events(room_id, "m.room.member", membership="join"), timeout=60)

        for i in range(3):
            await on_a.send_text(room_id, f"from a {i}")
        seen_on_b: list[str] = []

        def collect_b(sync: dict) -> bool:
            seen_on_b.extend(e["content"]["body"] for e in timeline_events(room_id, "m.room.message")(sync))
            return len(seen_on_b) >= 3

        await on_b.sync_until(collect_b, timeout=60)
        assert seen_on_b == ["from a 0", "from a 1", "from a 2"]

        for i in range(3):
            await on_b.send_text(room_id, f"from b {i}")
        seen_on_a: list[str] = []

        def collect_a(sync: dict) -> bool:
            seen_on_a.extend(e["content"]["body"] for e in timeline_events(room_id, "m.room.message")(sync)
                             if e["sender"] == bert.user_id)
            return len(seen_on_a) >= 3

        await on_a.sync_until(collect_a, timeout=60)
        assert seen_on_a == ["from b 0", "from b 1", "from b 2"]
        # Both servers agree on the room's members.
        for client in (on_a, on_b):
            members = {e["state_key"]: e["content"]["membership"] for e in await client.state(room_id)
                       if e["type"] == "m.room.member"}
            assert members == {anna.user_id: "join", bert.user_id: "join"}
