"""The interop test bench itself: a real Synapse runs here, and our server speaks HTTPS."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

from tests.e2e.server_process import ServerProcess
from tests.federation.synapse_peer import DEFAULT_PASSWORD, SynapseError, SynapsePeer


async def test_synapse_registers_a_user_who_logs_in_and_creates_a_room(synapse):
    alice = await synapse.register("alice")
    assert alice.user_id == f"@alice:{synapse.server_name}"

    again = await synapse.login("alice", DEFAULT_PASSWORD)
    assert again.user_id == alice.user_id and again.access_token != alice.access_token

    async with synapse.client(again) as c:
        assert (await c.call("GET", "/_matrix/client/v3/account/whoami"))["user_id"] == alice.user_id
        room_id = await c.create_room(preset="public_chat", name="bench")
        state = {(e["type"], e["state_key"]): e for e in await c.state(room_id)}
    assert state[("m.room.create", "")]["sender"] == alice.user_id
    assert state[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
    assert state[("m.room.name", "")]["content"]["name"] == "bench"


async def test_synapse_serves_federation_over_tls_at_its_server_name(synapse):
    async with aiohttp.ClientSession() as session:
        async with session.get(synapse.tls_url + "/_matrix/key/v2/server", ssl=False) as response:
            assert response.status == 200
            keys = await response.json()
    assert keys["server_name"] == synapse.server_name
    assert keys["verify_keys"]


async def test_two_synapses_federate_on_the_bench(synapse, tmp_path, pg_admin_dsn, synapse_install):
    """The bench's own baseline: if Synapse cannot federate with Synapse here, an interop
    failure says nothing about our server."""
    other = SynapsePeer(tmp_path / "other", pg_admin_dsn, synapse_install)
    try:
        await other.start()
        carol, dave = await synapse.register("carol"), await other.register("dave")
        async with synapse.client(carol) as c, other.client(dave) as d:
            room_id = await c.create_room(preset="public_chat")
            await d.join(room_id, via=[synapse.server_name])
            await c.send_text(room_id, "over federation")

            def message(sync: dict):
                timeline = sync.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
                return [e for e in timeline.get("events", []) if e["type"] == "m.room.message"]

            [event] = await d.sync_until(message, timeout=60)
        assert event["sender"] == carol.user_id and event["content"]["body"] == "over federation"
    finally:
        await other.close()


async def test_synapse_keeps_its_data_across_a_restart(synapse):
    bob = await synapse.register("bob")
    async with synapse.client(bob) as c:
        room_id = await c.create_room()
    await synapse.restart()
    async with synapse.client(bob) as c:
        assert (await c.call("GET", "/_matrix/client/v3/joined_rooms"))["joined_rooms"] == [room_id]
    async with synapse.client("not-a-token") as c:
        try:
            await c.call("GET", "/_matrix/client/v3/account/whoami")
        except SynapseError as e:
            assert e.status == 401 and e.errcode == "M_UNKNOWN_TOKEN"
        else:
            raise AssertionError("an unknown access token was accepted")


async def test_our_server_answers_over_https_at_its_server_name(our_server_tls):
    assert our_server_tls.federation_name == f"127.0.0.1:{our_server_tls.tls_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(our_server_tls.tls_url + "/_matrix/client/versions", ssl=False) as response:
            assert response.status == 200
            assert "v1.11" in (await response.json())["versions"]
        # The plain client listener serves the same app.
        async with session.get(our_server_tls.base_url + "/_matrix/client/versions") as response:
            assert response.status == 200
    # What the HTTPS listener presents is the certificate ServerProcess made for it.
    presented = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", our_server_tls.tls_port))
    made = (our_server_tls.directory / "tls.crt").read_text()
    assert ssl.PEM_cert_to_DER_cert(presented) == ssl.PEM_cert_to_DER_cert(made)


def test_our_server_refuses_to_start_without_its_tls_key(tmp_path, database_dsn):
    server = ServerProcess(tmp_path / "hs", database_dsn, tls=True)
    (server.directory / "tls.key").unlink()
    try:
        server.start()
    except RuntimeError as e:
        assert "cannot load the TLS certificate" in str(e) and "tls.key" in str(e)
    else:
        server.stop()
        raise AssertionError("the server started without its TLS key")
