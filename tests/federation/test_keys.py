"""Server keys over HTTP: our /_matrix/key/v2/server, the notary endpoints, and the
KeyRing of one in-process homeserver fetching another's keys (each on its own
PostgreSQL database), directly or through a notary, cached, and used on events."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from federation.keys import KeyRing
from homeserver import cli
from homeserver.config import TrustedKeyServer
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.protocol.server_keys import parse_server_keys_response
from homeserver.protocol.signing import (
    SignatureError,
    add_content_hash,
    event_from_pdu,
    generate_signing_key,
    key_id,
    sign_event,
    sign_json,
    verify_json,
    verify_key_base64,
)
from homeserver.services.clock import now_ms
from homeserver.signing_key import load_signing_key, old_keys_path
from homeserver.storage.db import Database
from homeserver.storage.server_keys import ServerKeyStore
from tests.conftest import _with_database
from tests.federation.key_peers import Network, peer

A, B = "a.test", "b.test"
HOUR = 3600 * 1000


@pytest.fixture(autouse=True)
def _no_database_env(monkeypatch):
    monkeypatch.delenv("HOMESERVER_DATABASE", raising=False)


@pytest.fixture
async def make_dsn(pg_admin_dsn, database_pool):
    taken = []

    async def make() -> str:
        name = await database_pool.take()
        taken.append(name)
        return _with_database(pg_admin_dsn, name)

    yield make
    for name in taken:
        await database_pool.give_back(name)


@pytest.fixture
def network():
    return Network()


@pytest.fixture
async def two(tmp_path, make_dsn, network):
    """Servers a.test and b.test, each reaching the other."""
    async with peer(tmp_path, await make_dsn(), A, network) as a:
        async with peer(tmp_path, await make_dsn(), B, network) as b:
            yield a, b


@pytest.fixture
async def store(make_dsn):
    """The key table of a third server that has its own database."""
    db = await Database.connect(await make_dsn(), max_size=2)
    yield ServerKeyStore(db)
    await db.close()


def _key_id(p) -> str:
    return key_id(p.services.signing_key)


# --- GET /_matrix/key/v2/server -------------------------------------------------------


@pytest.mark.parametrize("path", ["/_matrix/key/v2/server", "/_matrix/key/v2/server/ed25519:whatever"])
async def test_our_keys_are_published_signed(two, path):
    a, _ = two
    before = now_ms()
    r = await a.client.get(path)
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = await r.json()
    key = a.services.signing_key
    assert body["server_name"] == A
    assert body["verify_keys"] == {key_id(key): {"key": verify_key_base64(key)}}
    assert body["old_verify_keys"] == {}
    # config.federation.key_validity_hours, 24 by default.
    assert before + 24 * HOUR <= body["valid_until_ts"] <= now_ms() + 24 * HOUR
    verify_json(body, A, key_id(key), key.verify_key)
    parse_server_keys_response(body, A, now_ms())


async def test_the_validity_follows_the_configuration(tmp_path, make_dsn, network):
    async with peer(tmp_path, await make_dsn(), A, network, federation={"key_validity_hours": 2}) as a:
        body = await (await a.client.get("/_matrix/key/v2/server")).json()
        assert body["valid_until_ts"] <= now_ms() + 2 * HOUR


# --- The KeyRing -----------------------------------------------------------------------


async def test_two_servers_fetch_and_verify_each_other_s_keys(two, network):
    a, b = two
    keys = await a.keyring.get_verify_keys(B, [_key_id(b)], now_ms())
    assert bytes(keys[_key_id(b)]) == bytes(b.services.signing_key.verify_key)
    keys = await b.keyring.get_verify_keys(A, [_key_id(a)], now_ms())
    assert bytes(keys[_key_id(a)]) == bytes(a.services.signing_key.verify_key)
    # Each kept the other's response, as signed, in its own database.
    rows = await a.keyring.store.get_responses(B)
    assert [row.key_id for row in rows] == [_key_id(b)]
    assert parse_server_keys_response(json.loads(rows[0].key_json), B, rows[0].fetched_ts)
    assert await b.keyring.store.get_responses(B) == []

    signed = sign_json({"hello": "world"}, B, b.services.signing_key)
    await a.keyring.verify_json(signed, B, now_ms())
    forged = dict(signed, hello="there")
    with pytest.raises(SignatureError):
        await a.keyring.verify_json(forged, B, now_ms())


async def test_keys_come_from_memory_then_postgresql_without_refetching(two, network):
    a, b = two
    await a.keyring.get_verify_keys(B, [_key_id(b)], now_ms())
    assert network.count(B) == 1
    await a.keyring.get_verify_keys(B, [_key_id(b)], now_ms())
    assert network.count(B) == 1
    # A fresh KeyRing on the same database, with B gone: the table answers.
    network.peers.pop(B)
    fresh = KeyRing(A, a.services.signing_key, a.keyring.store, network, key_validity_ms=HOUR)
    keys = await fresh.get_verify_keys(B, [_key_id(b)], now_ms())
    assert bytes(keys[_key_id(b)]) == bytes(b.services.signing_key.verify_key)
    assert network.count(B) == 1


async def test_our_own_keys_are_answered_without_fetching(two, network):
    a, _ = two
    keys = await a.keyring.get_verify_keys(A, [_key_id(a), "ed25519:unknown"], now_ms() + 1000 * HOUR)
    assert set(keys) == {_key_id(a)}
    assert network.sent == []


async def test_concurrent_lookups_share_one_fetch(two, network):
    a, b = two
    results = await asyncio.gather(*(a.keyring.get_verify_keys(B, [_key_id(b)], now_ms()) for _ in range(10)))
    assert all(_key_id(b) in r for r in results)
    assert network.count(B) == 1


async def test_a_lookup_that_read_the_cache_before_a_fetch_finished_uses_that_fetch(two, network):
    """The slow reader's cache miss predates the other caller's fetch: it re-reads, not refetches."""
    a, b = two
    store = a.keyring.store
    real_get_responses = store.get_responses
    fetched = asyncio.Event()
    calls = 0

    async def get_responses(server_name, key_ids):
        nonlocal calls
        calls += 1
        first = calls == 1
        rows = await real_get_responses(server_name, key_ids)
        if first:  # the first reader holds its (empty) answer until the fetch is over
            await fetched.wait()
        return rows

    store.get_responses = get_responses
    slow = asyncio.ensure_future(a.keyring.get_verify_keys(B, [_key_id(b)], now_ms()))
    while calls == 0:
        await asyncio.sleep(0)
    assert _key_id(b) in await a.keyring.get_verify_keys(B, [_key_id(b)], now_ms())
    fetched.set()
    assert _key_id(b) in await slow
    assert network.count(B) == 1


async def test_a_key_not_valid_long_enough_is_refetched_and_not_used(tmp_path, make_dsn, network):
    async with peer(tmp_path, await make_dsn(), A, network) as a:
        async with peer(tmp_path, await make_dsn(), B, network, federation={"key_validity_hours": 1}) as b:
            assert await a.keyring.get_verify_keys(B, [_key_id(b)], now_ms())
            assert network.count(B) == 1
            # B publishes its key for an hour only: asking for two refetches, then gives up.
            assert await a.keyring.get_verify_keys(B, [_key_id(b)], now_ms() + 2 * HOUR) == {}
            assert network.count(B) == 2
            # Room versions 1-4 ignore validity (minimum 0): the cached key serves.
            assert await a.keyring.get_verify_keys(B, [_key_id(b)], 0)
            assert network.count(B) == 2


async def test_an_unreachable_server_without_notaries_has_no_keys(two, store, network):
    a, _ = two
    ring = KeyRing("c.test", generate_signing_key("c"), store, network, key_validity_ms=HOUR,
                   refetch_interval_ms=0)
    assert await ring.get_verify_keys("nowhere.test", ["ed25519:x"], 0) == {}
    with pytest.raises(SignatureError):
        await ring.verify_json(sign_json({}, "nowhere.test", generate_signing_key("x")), "nowhere.test", 0)


# --- Through notaries ------------------------------------------------------------------


class _ReachOnly(Network):
    """A client that reaches only some servers of another network."""

    def __init__(self, network: Network, *names: str):
        super().__init__()
        self.peers = {name: network.peers[name] for name in names}


def _ring(store, client, *notaries: TrustedKeyServer) -> KeyRing:
    return KeyRing("c.test", generate_signing_key("c"), store, client, key_validity_ms=HOUR,
                   trusted_key_servers=notaries, refetch_interval_ms=0)


async def test_keys_of_an_unreachable_server_come_from_a_pinned_notary(two, store, network):
    a, b = two
    only_a = _ReachOnly(network, A)
    pinned = {_key_id(a): verify_key_base64(a.services.signing_key)}
    ring = _ring(store, only_a, TrustedKeyServer(server_name=A, verify_keys=pinned))
    keys = await ring.get_verify_keys(B, [_key_id(b)], now_ms())
    assert bytes(keys[_key_id(b)]) == bytes(b.services.signing_key.verify_key)
    assert [(d, m, p) for d, m, p in only_a.sent] == [
        (B, "GET", "/_matrix/key/v2/server"), (A, "POST", "/_matrix/key/v2/query")]
    # Stored as relayed: B's signature and the notary's.
    (row,) = await store.get_responses(B)
    assert set(json.loads(row.key_json)["signatures"]) == {A, B}


async def test_a_notary_signature_that_does_not_match_the_pinned_key_is_refused(two, store, network):
    a, b = two
    wrong = generate_signing_key(a.services.signing_key.version)
    ring = _ring(store, _ReachOnly(network, A),
                 TrustedKeyServer(server_name=A, verify_keys={key_id(wrong): verify_key_base64(wrong)}))
    assert await ring.get_verify_keys(B, [_key_id(b)], now_ms()) == {}
    assert await store.get_responses(B) == []


async def test_an_unpinned_notary_is_trusted_but_the_origin_signature_is_still_checked(two, store, network):
    _, b = two
    ring = _ring(store, _ReachOnly(network, A), TrustedKeyServer(server_name=A))
    assert _key_id(b) in await ring.get_verify_keys(B, [_key_id(b)], now_ms())


async def test_a_notary_cannot_invent_keys(two, store, network):
    """A notary relaying keys for b.test that b.test never signed: refused."""
    _, b = two
    impostor = generate_signing_key(b.services.signing_key.version)
    notary_key = generate_signing_key("n")

    async def query(request: web.Request) -> web.Response:
        forged = sign_json({
            "server_name": B, "valid_until_ts": now_ms() + HOUR, "old_verify_keys": {},
            "verify_keys": {key_id(impostor): {"key": verify_key_base64(impostor)}},
        }, "impostor.test", impostor)
        # Looks self-signed by B only if one does not check the key.
        forged["signatures"][B] = forged["signatures"].pop("impostor.test")
        forged["signatures"][B][key_id(impostor)] = "A" * 86
        return web.json_response({"server_keys": [sign_json(forged, "notary.test", notary_key)]})

    app = web.Application()
    app.router.add_post("/_matrix/key/v2/query", query)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        lying = Network()
        lying.add("notary.test", client)
        ring = _ring(store, lying, TrustedKeyServer(
            server_name="notary.test", verify_keys={key_id(notary_key): verify_key_base64(notary_key)}))
        assert await ring.get_verify_keys(B, [key_id(impostor)], now_ms()) == {}
        assert lying.count("notary.test") == 1
    finally:
        await client.close()


# --- The notary endpoints ----------------------------------------------------------------


async def test_post_query_answers_with_the_origin_response_countersigned(two, network):
    a, b = two
    r = await a.client.post("/_matrix/key/v2/query", json={
        "server_keys": {B: {_key_id(b): {"minimum_valid_until_ts": now_ms()}}, A: {}}})
    assert r.status == 200
    answers = {k["server_name"]: k for k in (await r.json())["server_keys"]}
    assert set(answers) == {A, B}
    relayed = answers[B]
    verify_json(relayed, A, _key_id(a), a.services.signing_key.verify_key)
    response = parse_server_keys_response(relayed, B, now_ms())
    assert bytes(response.keys[_key_id(b)].verify_key) == bytes(b.services.signing_key.verify_key)
    parse_server_keys_response(answers[A], A, now_ms())
    assert network.count(B) == 1

    # Cached now; a minimum beyond what B published makes the notary ask B again.
    r = await a.client.get(f"/_matrix/key/v2/query/{B}")
    assert [k["server_name"] for k in (await r.json())["server_keys"]] == [B]
    assert network.count(B) == 1
    r = await a.client.get(f"/_matrix/key/v2/query/{B}/{_key_id(b)}",
                           params={"minimum_valid_until_ts": str(now_ms() + 48 * HOUR)})
    assert len((await r.json())["server_keys"]) == 1  # the stale answer is still served
    assert network.count(B) == 2


async def test_query_for_an_unknown_server_answers_nothing(two, network):
    a, _ = two
    r = await a.client.post("/_matrix/key/v2/query", json={
        "server_keys": {"gone.test": {}, "not a server name": {}}})
    assert (r.status, await r.json()) == (200, {"server_keys": []})
    assert [d for d, _, _ in network.sent] == ["gone.test"]
    r = await a.client.get("/_matrix/key/v2/query/gone.test")
    assert (await r.json()) == {"server_keys": []}


async def test_post_query_needs_server_keys(two):
    a, _ = two
    r = await a.client.post("/_matrix/key/v2/query", json={})
    assert r.status == 400
    r = await a.client.post("/_matrix/key/v2/query", json={"server_keys": {B: {"k": {"minimum_valid_until_ts": "1"}}}})
    assert r.status == 400


# --- Events -------------------------------------------------------------------------------


def _event(version: str, signing_key, sender_server: str, origin_server_ts: int, **extra):
    room_version = KNOWN_ROOM_VERSIONS[version]
    pdu = {
        "type": "m.room.message", "room_id": f"!room:{sender_server}", "sender": f"@u:{sender_server}",
        "content": {"body": "hi"}, "origin_server_ts": origin_server_ts, "depth": 3,
        "prev_events": [], "auth_events": [], **extra,
    }
    add_content_hash(pdu)
    sign_event(pdu, room_version, sender_server, signing_key)
    return event_from_pdu(pdu, room_version)


async def test_event_signatures_are_checked_with_the_sender_server_keys(two):
    a, b = two
    event = _event("10", b.services.signing_key, B, now_ms())
    await a.keyring.verify_event_signatures(event)
    # A redacted copy still verifies: the signature covers the redacted form.
    redacted = copy.deepcopy(event.json)
    redacted["content"] = {}
    await a.keyring.verify_event_signatures(event_from_pdu(redacted, event.room_version))

    tampered = copy.deepcopy(event.json)
    tampered["origin_server_ts"] += 1
    with pytest.raises(SignatureError):
        await a.keyring.verify_event_signatures(event_from_pdu(tampered, event.room_version))
    unsigned = copy.deepcopy(event.json)
    unsigned["signatures"] = {}
    with pytest.raises(SignatureError, match="not signed"):
        await a.keyring.verify_event_signatures(event_from_pdu(unsigned, event.room_version))


async def test_a_restricted_join_needs_the_authorising_server_signature(two):
    a, b = two
    member = dict(type="m.room.member", state_key=f"@u:{B}",
                  content={"membership": "join", "join_authorised_via_users_server": f"@admin:{A}"})
    join = _event("10", b.services.signing_key, B, now_ms(), **member)
    with pytest.raises(SignatureError, match=A):
        await a.keyring.verify_event_signatures(join)
    sign_event(join.json, join.room_version, A, a.services.signing_key)
    await a.keyring.verify_event_signatures(join)


async def test_room_versions_1_and_2_need_the_event_id_server_signature(two):
    a, b = two
    event = _event("1", b.services.signing_key, B, now_ms(), event_id=f"$e:{A}")
    with pytest.raises(SignatureError, match=A):
        await a.keyring.verify_event_signatures(event)
    sign_event(event.json, event.room_version, A, a.services.signing_key)
    await a.keyring.verify_event_signatures(event)


# --- rotate-signing-key ----------------------------------------------------------------------


async def test_a_rotated_key_is_published_as_old_and_still_verifies_old_events(tmp_path, make_dsn, network):
    b_dsn = await make_dsn()
    async with peer(tmp_path, await make_dsn(), A, network) as a:
        async with peer(tmp_path, b_dsn, B, network) as b:
            old_key = b.services.signing_key
            key_file = b.services.config.signing_key_file
            before = _event("10", old_key, B, now_ms() - 1000)
            await a.keyring.verify_event_signatures(before)
        config_path = tmp_path / "b.yaml"
        config_path.write_text(f"server_name: {B}\ndata_dir: {key_file.parent}\ndatabase: {b_dsn}\n")
        assert await asyncio.to_thread(cli.main, ["-c", str(config_path), "rotate-signing-key"]) == 0
        new_key = load_signing_key(key_file)
        assert key_id(new_key) != key_id(old_key)
        assert key_file.stat().st_mode & 0o077 == 0
        assert old_keys_path(key_file).read_text().split()[:3] == [
            old_key.alg, old_key.version, verify_key_base64(old_key)]

        # Restarted, b.test signs with the new key and lists the old one.
        async with peer(tmp_path, b_dsn, B, network) as b:
            assert _key_id(b) == key_id(new_key)
            body = await (await b.client.get("/_matrix/key/v2/server")).json()
            assert list(body["verify_keys"]) == [key_id(new_key)]
            (old_id, old_entry), = body["old_verify_keys"].items()
            assert old_id == key_id(old_key) and old_entry["key"] == verify_key_base64(old_key)
            expired_ts = old_entry["expired_ts"]
            assert before.origin_server_ts < expired_ts <= now_ms()
            verify_json(body, B, key_id(new_key), new_key.verify_key)

            # A server that never saw the old key learns it from old_verify_keys.
            async with peer(tmp_path, await make_dsn(), "c.test", network) as c:
                await c.keyring.verify_event_signatures(before)
                # Signed with the old key after it expired: refused from room version 5 on.
                late = _event("10", old_key, B, expired_ts + 1000)
                with pytest.raises(SignatureError):
                    await c.keyring.verify_event_signatures(late)
                await c.keyring.verify_event_signatures(_event("4", old_key, B, expired_ts + 1000))
                # Old keys sign no requests.
                with pytest.raises(SignatureError):
                    await c.keyring.verify_json(sign_json({}, B, old_key), B, now_ms())
                await c.keyring.verify_event_signatures(_event("10", new_key, B, now_ms()))


# --- The table -------------------------------------------------------------------------------


async def test_a_response_valid_for_less_time_does_not_replace_a_stored_one(store):
    await store.store_response(B, ["ed25519:k"], '{"newer":true}', 2000, 10)
    # A stale answer (a notary's old cache, say) arrives later.
    await store.store_response(B, ["ed25519:k", "ed25519:j"], '{"older":true}', 1000, 20)
    rows = {row.key_id: row for row in await store.get_responses(B)}
    assert (rows["ed25519:k"].key_json, rows["ed25519:k"].valid_until_ts) == ('{"newer":true}', 2000)
    assert rows["ed25519:j"].key_json == '{"older":true}'
    await store.store_response(B, ["ed25519:k"], '{"newest":true}', 2000, 30)
    (row,) = await store.get_responses(B, ["ed25519:k"])
    assert (row.key_json, row.fetched_ts) == ('{"newest":true}', 30)
