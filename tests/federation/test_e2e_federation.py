"""End-to-end encryption across servers: key queries and claims, device list updates and
send-to-device, between two of our servers (each a real process on HTTPS, X-Matrix signed
federation), and an encrypted conversation of matrix-js-sdk clients on ours and on Synapse.

Spec: https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption,
#device-management, #send-to-device-messaging.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import nacl.signing
import pytest
import yaml

from federation.client import FederationClient
from homeserver.config import FederationConfig
from homeserver.signing_key import load_signing_key
from tests.client.e2e_helpers import cross_signing_key, device_keys, public, sign
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_js_e2ee import JS_DIR, _node_env, _node_tool, js_client  # noqa: F401 (fixture)
from tests.federation.interop_helpers import timeline_events
from tests.federation.synapse_peer import SynapseClient

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery staple"


@dataclass
class Device:
    user_id: str
    device_id: str
    access_token: str
    base_url: str

    def client(self) -> SynapseClient:
        return SynapseClient(self.base_url, self.access_token)


async def register(server: ServerProcess, localpart: str) -> Device:
    async with SynapseClient(server.base_url) as c:
        body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        answer = await c.call("POST", f"{V3}/register", body)
    return Device(answer["user_id"], answer["device_id"], answer["access_token"], server.base_url)


async def login(server: ServerProcess, user_id: str) -> Device:
    async with SynapseClient(server.base_url) as c:
        answer = await c.call("POST", f"{V3}/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": PASSWORD})
    return Device(answer["user_id"], answer["device_id"], answer["access_token"], server.base_url)


async def upload_keys(device: Device, one_time: int = 0) -> nacl.signing.SigningKey:
    key = nacl.signing.SigningKey.generate()
    otks = {
        f"signed_curve25519:K{i}": sign({"key": f"otk{i}"}, device.user_id, device.device_id, key)
        for i in range(one_time)
    }
    async with device.client() as c:
        await c.call("POST", f"{V3}/keys/upload", {"device_keys": device_keys(device, key), "one_time_keys": otks})
    return key


async def keys_query(device: Device, wanted: dict[str, list[str]], timeout_ms: int = 10_000) -> dict:
    async with device.client() as c:
        return await c.call("POST", f"{V3}/keys/query", {"device_keys": wanted, "timeout": timeout_ms})


def database_of(server: ServerProcess) -> str:
    return yaml.safe_load(server.config_path.read_text())["database"]


async def held_devices(server: ServerProcess, user_id: str) -> dict[str, Any] | None:
    """What the server caches of another server's user (remote_device_lists and remote_devices)."""
    conn = await asyncpg.connect(database_of(server))
    try:
        row = await conn.fetchrow("SELECT stale, master_key FROM remote_device_lists WHERE user_id = $1", user_id)
        if row is None:
            return None
        devices = await conn.fetch("SELECT device_id FROM remote_devices WHERE user_id = $1 ORDER BY 1", user_id)
    finally:
        await conn.close()
    return {"stale": row["stale"], "master": row["master_key"] is not None,
            "devices": [d["device_id"] for d in devices]}


async def sync_until(device: Device, predicate, since: str | None = None, timeout: float = 60):
    """Like SynapseClient.sync_until, from a given token; returns (value, next_batch)."""
    deadline = time.monotonic() + timeout
    async with device.client() as c:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no /sync response matched within {timeout} s")
            sync = await c.sync(since, timeout_ms=int(min(remaining, 10) * 1000) if since else 0)
            found = predicate(sync)
            since = sync["next_batch"]
            if found:
                return found, since


def device_list_changed(user_id: str):
    return lambda sync: user_id in sync.get("device_lists", {}).get("changed", [])


def to_device_events(event_type: str):
    return lambda sync: [e for e in sync.get("to_device", {}).get("events", []) if e["type"] == event_type]


@pytest.fixture
async def two_servers(start_our_server_tls) -> tuple[ServerProcess, ServerProcess]:
    return await start_our_server_tls(log_level="INFO"), await start_our_server_tls(log_level="INFO")


async def share_a_room(alice: Device, bob: Device, via: str) -> str:
    async with alice.client() as a, bob.client() as b:
        room_id = await a.create_room(preset="private_chat", invite=[bob.user_id])
        await b.sync_until(lambda s: room_id in s.get("rooms", {}).get("invite", {}), timeout=60)
        await b.join(room_id, via=[via])
        await a.sync_until(timeline_events(room_id, "m.room.member", membership="join"), timeout=60)
    return room_id


async def test_keys_query_and_claim_reach_the_other_server(two_servers):
    hs0, hs1 = two_servers
    alice = await register(hs0, "alice")
    bob = await register(hs1, "bob")
    bob_key = await upload_keys(bob, one_time=2)
    master = nacl.signing.SigningKey.generate()
    async with bob.client() as c:
        await c.call("POST", f"{V3}/keys/device_signing/upload",
                     {"master_key": cross_signing_key(bob, "master", master)})

    # No room shared: hs0 asks hs1 each time, and keeps nothing.
    unreachable = "@nobody:127.0.0.1:1"
    result = await keys_query(alice, {bob.user_id: [], unreachable: []}, timeout_ms=5_000)
    got = result["device_keys"][bob.user_id][bob.device_id]
    assert got["keys"][f"ed25519:{bob.device_id}"] == public(bob_key)
    assert got["signatures"][bob.user_id][f"ed25519:{bob.device_id}"]
    assert result["master_keys"][bob.user_id]["keys"] == {f"ed25519:{public(master)}": public(master)}
    assert list(result["failures"]) == ["127.0.0.1:1"]
    assert unreachable not in result["device_keys"]
    assert await held_devices(hs0, bob.user_id) is None

    async with alice.client() as c:
        claimed = await c.call("POST", f"{V3}/keys/claim", {
            "one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}})
        again = await c.call("POST", f"{V3}/keys/claim", {
            "one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}})
    [(key_id, key)] = claimed["one_time_keys"][bob.user_id][bob.device_id].items()
    [(key_id2, _)] = again["one_time_keys"][bob.user_id][bob.device_id].items()
    assert key_id.startswith("signed_curve25519:") and key_id != key_id2
    assert key["key"] in ("otk0", "otk1") and claimed["failures"] == {}
    async with bob.client() as c:
        counts = await c.call("POST", f"{V3}/keys/upload", {})
    assert counts["one_time_key_counts"]["signed_curve25519"] == 0


async def test_device_lists_follow_the_other_server(two_servers):
    hs0, hs1 = two_servers
    alice = await register(hs0, "alice")
    bob = await register(hs1, "bob")
    await upload_keys(alice)
    await upload_keys(bob)
    _, alice_since = await sync_until(alice, lambda s: True)
    await share_a_room(alice, bob, hs0.federation_name)

    # Bob's join: his devices count as changed for Alice, and hs0 fetches them.
    _, alice_since = await sync_until(alice, device_list_changed(bob.user_id), alice_since)
    result = await keys_query(alice, {bob.user_id: []})
    assert list(result["device_keys"][bob.user_id]) == [bob.device_id]
    assert await held_devices(hs0, bob.user_id) == {"stale": False, "master": False, "devices": [bob.device_id]}
    # And hs1 follows Alice's (hs1's user learns of her through the room too).
    result = await keys_query(bob, {alice.user_id: []})
    assert list(result["device_keys"][alice.user_id]) == [alice.device_id]

    # A new device of Bob's, with keys: an m.device_list_update reaches hs0.
    laptop = await login(hs1, bob.user_id)
    await upload_keys(laptop)
    _, alice_since = await sync_until(alice, device_list_changed(bob.user_id), alice_since)
    held = await held_devices(hs0, bob.user_id)
    assert held is not None and held["devices"] == sorted([bob.device_id, laptop.device_id])
    result = await keys_query(alice, {bob.user_id: []})
    assert sorted(result["device_keys"][bob.user_id]) == sorted([bob.device_id, laptop.device_id])

    # Cross-signing keys: an m.signing_key_update.
    master = nacl.signing.SigningKey.generate()
    async with bob.client() as c:
        await c.call("POST", f"{V3}/keys/device_signing/upload",
                     {"master_key": cross_signing_key(bob, "master", master)})
    _, alice_since = await sync_until(alice, device_list_changed(bob.user_id), alice_since)
    result = await keys_query(alice, {bob.user_id: []})
    assert result["master_keys"][bob.user_id]["keys"] == {f"ed25519:{public(master)}": public(master)}

    # The laptop logs out: deleted on hs0 as well.
    async with laptop.client() as c:
        await c.call("POST", f"{V3}/logout", {})
    _, alice_since = await sync_until(alice, device_list_changed(bob.user_id), alice_since)
    result = await keys_query(alice, {bob.user_id: []})
    assert list(result["device_keys"][bob.user_id]) == [bob.device_id]
    assert (await held_devices(hs0, bob.user_id))["devices"] == [bob.device_id]

    # Alice's new device reaches hs1 the same way.
    _, bob_since = await sync_until(bob, lambda s: True)
    phone = await login(hs0, alice.user_id)
    await upload_keys(phone)
    await sync_until(bob, device_list_changed(alice.user_id), bob_since)
    result = await keys_query(bob, {alice.user_id: []})
    assert sorted(result["device_keys"][alice.user_id]) == sorted([alice.device_id, phone.device_id])


async def test_to_device_messages_both_ways(two_servers):
    hs0, hs1 = two_servers
    alice = await register(hs0, "alice")
    bob = await register(hs1, "bob")
    bob_laptop = await login(hs1, bob.user_id)

    async with alice.client() as c:
        await c.call("PUT", f"{V3}/sendToDevice/m.room_key_request/txn1", {"messages": {
            bob.user_id: {bob.device_id: {"to": "phone"}}}})
        # The same transaction again is not sent twice.
        await c.call("PUT", f"{V3}/sendToDevice/m.room_key_request/txn1", {"messages": {
            bob.user_id: {bob.device_id: {"to": "phone"}}}})
        await c.call("PUT", f"{V3}/sendToDevice/m.room_key_request/txn2", {"messages": {
            bob.user_id: {"*": {"to": "all"}}}})
    phone_got: list[dict] = []

    def collect(sync: dict) -> bool:
        phone_got.extend(to_device_events("m.room_key_request")(sync))
        return len(phone_got) >= 2

    await sync_until(bob, collect)
    assert [(e["sender"], e["content"]) for e in phone_got] == [
        (alice.user_id, {"to": "phone"}), (alice.user_id, {"to": "all"})]
    laptop_got, _ = await sync_until(bob_laptop, to_device_events("m.room_key_request"))
    assert [e["content"] for e in laptop_got] == [{"to": "all"}]

    async with bob.client() as c:
        await c.call("PUT", f"{V3}/sendToDevice/m.dummy/t1", {"messages": {
            alice.user_id: {alice.device_id: {"hello": "alice"}}, bob.user_id: {bob_laptop.device_id: {"to": "me"}}}})
    alice_got, _ = await sync_until(alice, to_device_events("m.dummy"))
    assert [(e["sender"], e["content"]) for e in alice_got] == [(bob.user_id, {"hello": "alice"})]
    own, _ = await sync_until(bob_laptop, to_device_events("m.dummy"))
    assert [e["content"] for e in own] == [{"to": "me"}]


async def send_as(server: ServerProcess, destination: ServerProcess, txn_id: str, edus: list[dict]) -> None:
    """A transaction signed with ``server``'s own key, as if ``server`` had sent it."""
    key = load_signing_key(server.directory / "data" / "signing.key")
    config = FederationConfig(verify_certificates=False, ip_range_allowlist=["127.0.0.1/32"],
                              trusted_key_servers=[])
    client = FederationClient(server.federation_name, key, config)
    try:
        await client.put_json(destination.federation_name, f"/_matrix/federation/v1/send/{txn_id}",
                              {"origin": server.federation_name, "origin_server_ts": int(time.time() * 1000),
                               "pdus": [], "edus": edus})
    finally:
        await client.close()


async def test_a_server_speaks_only_for_its_users_and_a_gap_means_a_resync(two_servers):
    hs0, hs1 = two_servers
    alice = await register(hs0, "alice")
    carol = await register(hs0, "carol")
    bob = await register(hs1, "bob")
    await upload_keys(bob)
    await share_a_room(alice, bob, hs0.federation_name)
    result = await keys_query(alice, {bob.user_id: []})
    assert list(result["device_keys"][bob.user_id]) == [bob.device_id]
    _, alice_since = await sync_until(alice, lambda s: True)

    forged_key = nacl.signing.SigningKey.generate()
    forged = {"user_id": bob.user_id, "device_id": "FORGED", "stream_id": 10**9, "prev_id": [10**9 - 1],
              "deleted": False, "keys": device_keys(Device(bob.user_id, "FORGED", "", ""), forged_key)}
    await send_as(hs1, hs0, "forged-1", [
        # hs1 may not send for hs0's users...
        {"edu_type": "m.direct_to_device", "content": {
            "sender": carol.user_id, "type": "m.forged", "message_id": "m1",
            "messages": {alice.user_id: {alice.device_id: {"from": "not carol"}}}}},
        # ...and a device list update after one hs0 never saw makes hs0 ask hs1 for the whole list.
        {"edu_type": "m.device_list_update", "content": forged},
        {"edu_type": "m.direct_to_device", "content": {
            "sender": bob.user_id, "type": "m.real", "message_id": "m2",
            "messages": {alice.user_id: {"*": {"from": "bob"}}}}},
    ])
    got, _ = await sync_until(alice, to_device_events("m.real"), alice_since)
    assert [(e["sender"], e["content"]) for e in got] == [(bob.user_id, {"from": "bob"})]
    await sync_until(alice, device_list_changed(bob.user_id), alice_since)
    held = await held_devices(hs0, bob.user_id)
    assert held == {"stale": False, "master": False, "devices": [bob.device_id]}
    async with alice.client() as c:
        later = await c.sync(alice_since)
    assert not to_device_events("m.forged")(later)


# --- interop with Synapse: matrix-js-sdk on both sides ---------------------------------------


async def test_encrypted_conversation_with_a_synapse_user(synapse, our_server_tls, js_client):  # noqa: F811
    ours = await register(our_server_tls, "jsalice")
    theirs = await synapse.register("jsbob")
    node = _node_tool("node")
    config = {
        "alice": {"baseUrl": our_server_tls.base_url, "accessToken": ours.access_token},
        "bob": {"baseUrl": synapse.client_url, "accessToken": theirs.access_token},
        "via": our_server_tls.federation_name,
    }
    done = subprocess.run(
        [node, str(JS_DIR / "e2ee_federated.mjs"), json.dumps(config)], cwd=JS_DIR, capture_output=True,
        text=True, timeout=200, env=_node_env(node),
    )
    assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "room_encrypted": True,
        "bob_read": "Hello Bob on Synapse, this is secret",
        "bob_saw_wire_type": "m.room.encrypted",
        "alice_read": "Hi Alice, got it across servers",
        "alice_saw_wire_type": "m.room.encrypted",
        "server_has_ciphertext": True,
    }
