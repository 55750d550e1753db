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

from homeserver.protocol import signing
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


@pytest.fixture(params=["10", "12"])
async def setup(request, api: Api, peer: FakePeer) -> Setup:
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat", room_version=request.param)
    bob = peer.user("bob")
    room = await peer.join(room_id, bob)
    return Setup(api, peer, alice, room_id, room, bob)


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
