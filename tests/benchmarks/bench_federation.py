"""Federation benchmark: prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_federation [--members 2000 --state 10000 --messages 2000]

Starts a real Synapse (tests/federation/synapse_peer.py) and our server on HTTPS
(ServerProcess(tls=True)), each on a fresh database in HOMESERVER_TEST_DATABASE
(default postgresql://postgres@127.0.0.1:5432/postgres), and measures:
  - the join of a big Synapse room: --members users joined, --state state events
    in all (the members' joins, the room's first events, and custom
    `org.example.bench` state events of the creator with distinct state keys);
    our user joins it through Synapse (POST /join with server_name), timed, with
    our server's resident memory before and after and the events it stored;
  - inbound transactions: a fake peer of this benchmark (a signing key, its key
    endpoint on HTTPS, events signed here) joins that room through our server,
    then sends --messages messages in transactions of 50 PDUs, one transaction
    at a time as a server does per destination, straight to our /send: PDUs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse, urlunparse

import aiohttp
import asyncpg
import yarl
from aiohttp import web

from homeserver.protocol import signing, xmatrix
from homeserver.protocol.auth_rules import auth_types_for_event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.protocol.server_keys import server_keys_object
from tests.benchmarks.bench_messaging import rss_mb
from tests.e2e.server_process import ServerProcess, free_port
from tests.federation.synapse_peer import SynapseClient, SynapsePeer, SynapseUser, ensure_synapse
from tests.federation.tls_cert import make_self_signed_certificate

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "benchmark password"
# Synapse handles one room's events one at a time; a few requests in flight keep it busy.
SETUP_CONCURRENCY = 8
PDUS_PER_TRANSACTION = 50
# A public_chat room's own state: create, the creator's membership, power levels, join rules,
# history visibility, name.
_BASE_STATE = 6


def _database(dsn: str, name: str) -> str:
    return urlunparse(urlparse(dsn)._replace(path="/" + name))


async def _bounded(concurrency: int, jobs) -> list[Any]:
    semaphore = asyncio.Semaphore(concurrency)

    async def run(job):
        async with semaphore:
            return await job

    return await asyncio.gather(*(run(j) for j in jobs))


def _progress(label: str, done: int, total: int, started: float) -> None:
    if done == total or done % max(1, total // 10) == 0:
        print(f"  {label}: {done}/{total} ({time.monotonic() - started:.0f} s)", flush=True)


# --- the big room on Synapse ------------------------------------------------------------------


async def build_room(peer: SynapsePeer, members: int, state_events: int, prefix: str) -> tuple[str, int]:
    """A public room on Synapse with `members` joined users and about `state_events` state events
    in all; returns (room id, state events in it)."""
    started = time.monotonic()
    creator = await peer.register(f"{prefix}creator", PASSWORD, admin=True)
    # The creator's custom state comes with the room: Synapse writes initial_state as one batch,
    # where a PUT per state event would take it half an hour in a room this big.
    custom = max(0, state_events - members - _BASE_STATE)
    initial_state = [{"type": "org.example.bench", "state_key": f"key {i}", "content": {"n": i, "filler": "x" * 40}}
                     for i in range(custom)]
    # Thousands of events in one request: longer than SynapseClient's two minutes.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        async with session.post(peer.client_url + "/_matrix/client/v3/createRoom", json={
                "preset": "public_chat", "name": "federation bench", "initial_state": initial_state},
                headers={"Authorization": f"Bearer {creator.access_token}"}) as response:
            answer = await response.json(content_type=None)
            if response.status != 200:
                raise RuntimeError(f"createRoom on Synapse: {response.status} {answer}")
    room_id = answer["room_id"]
    print(f"  room created on Synapse with {custom} custom state events ({time.monotonic() - started:.0f} s)",
          flush=True)
    started = time.monotonic()
    done = 0

    async def member(i: int) -> None:
        nonlocal done
        user = await peer.register(f"{prefix}m{i}", PASSWORD)
        async with peer.client(user) as c:
            await c.join(room_id)
        done += 1
        _progress("members joined on Synapse", done, members - 1, started)

    await _bounded(SETUP_CONCURRENCY, [member(i) for i in range(1, members)])
    async with peer.client(creator) as c:
        total = len(await c.state(room_id))
    return room_id, total


# --- a fake federation peer -------------------------------------------------------------------


class FakePeer:
    """A server of this benchmark's own: its keys on HTTPS at 127.0.0.1:<port>, events signed here,
    transactions PUT straight to the other server. Whatever is sent to it is accepted and dropped."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.server_name = f"127.0.0.1:{self.port}"
        self.key = signing.generate_signing_key("bench")
        self.directory = directory
        self._runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.received_transactions = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/_matrix/key/v2/server", self._keys)
        app.router.add_put("/_matrix/federation/v1/send/{txn}", self._send)
        cert = make_self_signed_certificate(self.directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert.certificate), str(cert.private_key))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _keys(self, request: web.Request) -> web.Response:
        body = server_keys_object(self.server_name, {signing.key_id(self.key): signing.verify_key_base64(self.key)},
                                  {}, int(time.time() * 1000) + 24 * 3600 * 1000)
        return web.json_response(signing.sign_json(body, self.server_name, self.key))

    async def _send(self, request: web.Request) -> web.Response:
        await request.read()
        self.received_transactions += 1
        return web.json_response({"pdus": {}})

    async def call(self, server: ServerProcess, method: str, path: str, body: Any = None) -> Any:
        """A signed federation request to our server's HTTPS listener; the parsed answer."""
        assert self.session is not None
        header = xmatrix.sign_request(self.key, method, path, self.server_name, server.federation_name, body)
        data = None if body is None else json.dumps(body).encode()
        # encoded=True: the path goes out exactly as signed.
        url = yarl.URL(server.tls_url + path, encoded=True)
        async with self.session.request(method, url, data=data, ssl=False, headers={
                "Authorization": header, "Content-Type": "application/json"}) as response:
            answer = await response.json(content_type=None)
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status} {answer}")
            return answer

    def finish(self, event_json: dict[str, Any], version: RoomVersion) -> dict[str, Any]:
        signing.add_content_hash(event_json)
        signing.sign_event(event_json, version, self.server_name, self.key)
        return event_json


class FakeRoom:
    """The fake peer's user in a room: the state it knows and the tip it builds on."""

    def __init__(self, peer: FakePeer, user_id: str, room_id: str, version: RoomVersion,
                 state: dict[tuple[str, str], str], tip: str, depth: int):
        self.peer, self.user_id, self.room_id, self.version = peer, user_id, room_id, version
        self.state, self.tip, self.depth = state, tip, depth

    @classmethod
    async def join(cls, peer: FakePeer, server: ServerProcess, room_id: str, localpart: str) -> "FakeRoom":
        user_id = f"@{localpart}:{peer.server_name}"
        where = f"{quote(room_id, safe='')}/{quote(user_id, safe='')}"
        versions = "&".join(f"ver={quote(v)}" for v in KNOWN_ROOM_VERSIONS)
        answer = await peer.call(server, "GET", f"/_matrix/federation/v1/make_join/{where}?{versions}")
        version = KNOWN_ROOM_VERSIONS[answer["room_version"]]
        event_json = {k: v for k, v in answer["event"].items() if k not in ("signatures", "hashes", "unsigned")}
        event_json["origin_server_ts"] = int(time.time() * 1000)
        event = peer.finish(event_json, version)
        event_id = signing.compute_event_id(event, version)
        sent = await peer.call(server, "PUT", f"/_matrix/federation/v2/send_join/{quote(room_id, safe='')}/"
                               f"{quote(event_id, safe='')}", event)
        state = {}
        for pdu in sent["state"]:
            if "state_key" in pdu:
                state[(pdu["type"], pdu["state_key"])] = signing.compute_event_id(pdu, version)
        state[("m.room.member", user_id)] = event_id
        return cls(peer, user_id, room_id, version, state, event_id, event_json["depth"])

    def message(self, n: int) -> dict[str, Any]:
        keys = auth_types_for_event(self.version, "m.room.message", self.user_id, None, {})
        if not self.version.room_id_from_create_event:
            keys = [("m.room.create", ""), *keys]
        auth = list(dict.fromkeys(self.state[k] for k in keys if k in self.state))
        self.depth += 1
        event_json = {
            "type": "m.room.message", "room_id": self.room_id, "sender": self.user_id,
            "content": {"msgtype": "m.text", "body": f"bench message {n}"},
            "origin_server_ts": int(time.time() * 1000), "depth": self.depth,
            "prev_events": [self.tip], "auth_events": auth,
        }
        event = self.peer.finish(event_json, self.version)
        self.tip = signing.compute_event_id(event, self.version)
        return event


async def inbound_throughput(peer: FakePeer, server: ServerProcess, room: FakeRoom, messages: int) -> tuple[float, int]:
    """(PDUs/s our server accepted from the fake peer, PDUs it refused)."""
    # Signed beforehand: the figure is our server's, not the signing's.
    batches = []
    for start in range(0, messages, PDUS_PER_TRANSACTION):
        batches.append([room.message(n) for n in range(start, min(messages, start + PDUS_PER_TRANSACTION))])
    errors = 0
    started = time.perf_counter()
    for i, pdus in enumerate(batches):
        body = {"origin": peer.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": pdus}
        answer = await peer.call(server, "PUT", f"/_matrix/federation/v1/send/bench{uuid.uuid4().hex[:6]}{i}", body)
        errors += sum(1 for result in answer["pdus"].values() if result.get("error"))
    elapsed = time.perf_counter() - started
    return messages / elapsed, errors


# --- our side -----------------------------------------------------------------------------------


async def register_ours(server: ServerProcess, localpart: str) -> SynapseUser:
    async with SynapseClient(server.base_url) as c:
        answer = await c.call("POST", "/_matrix/client/v3/register", {
            "username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
    return SynapseUser(answer["user_id"], answer["access_token"])


async def join_ours(server: ServerProcess, user: SynapseUser, room_id: str, via: str) -> float:
    path = f"/_matrix/client/v3/join/{quote(room_id, safe='')}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        started = time.perf_counter()
        async with session.post(server.base_url + path, params={"server_name": via}, json={},
                                headers={"Authorization": f"Bearer {user.access_token}"}) as response:
            body = await response.text()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"our join failed: {response.status} {body}")
    return elapsed


async def stored_events(dsn: str, room_id: str) -> tuple[int, int]:
    """(events of the room our server stored, of which outliers)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT count(*) AS n, count(*) FILTER (WHERE outlier) AS outliers"
                                  " FROM events WHERE room_id = $1", room_id)
    finally:
        await conn.close()
    return row["n"], row["outliers"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=os.environ.get("HOMESERVER_TEST_DATABASE") or DEFAULT_DSN,
                        help="PostgreSQL DSN of a server to create the fresh databases in")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--state", type=int, default=10000, help="state events of the room in all")
    parser.add_argument("--messages", type=int, default=2000, help="PDUs the fake peer sends")
    parser.add_argument("--log-level", default="WARNING", help="our server's log level")
    args = parser.parse_args()
    prefix = uuid.uuid4().hex[:6]
    install = ensure_synapse()

    name = f"hs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = _database(args.database, name)

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        peer = SynapsePeer(root / "synapse", args.database, install, log_level="WARNING", bcrypt_rounds=4)
        server = ServerProcess(root / "ours", dsn, tls=True, log_level=args.log_level)
        fake = FakePeer(root / "fake")
        try:
            await peer.start()
            server.start(timeout=120)
            await fake.start()
            print(f"Synapse {install.version} at {peer.server_name}, ours at {server.federation_name} "
                  f"(pid {server.process.pid}), fake peer at {fake.server_name}", flush=True)

            started = time.monotonic()
            room_id, state_count = await build_room(peer, args.members, args.state, prefix)
            print(f"room built on Synapse in {time.monotonic() - started:.0f} s: {args.members} members, "
                  f"{state_count} state events", flush=True)

            user = await register_ours(server, f"{prefix}joiner")
            await asyncio.sleep(1)
            before = rss_mb(server.process.pid)
            join_seconds = await join_ours(server, user, room_id, peer.server_name)
            after = rss_mb(server.process.pid)
            events, outliers = await stored_events(dsn, room_id)
            print(f"join of the room ({args.members} members, {state_count} state events): {join_seconds:.1f} s")
            print(f"our server's resident memory: {before:.0f} MB before the join, {after:.0f} MB after")
            print(f"events stored for the room: {events} ({outliers} outliers)", flush=True)

            room = await FakeRoom.join(fake, server, room_id, f"{prefix}fake")
            rate, errors = await inbound_throughput(fake, server, room, args.messages)
            events, _ = await stored_events(dsn, room_id)
            print(f"inbound transactions, {args.messages} messages in transactions of {PDUS_PER_TRANSACTION} "
                  f"from one peer: {rate:.0f} PDUs/s ({errors} refused)")
            print(f"our server's resident memory after the transactions: {rss_mb(server.process.pid):.0f} MB; "
                  f"events stored for the room: {events}")
        finally:
            await fake.close()
            server.stop()
            await peer.close()
            admin = await asyncpg.connect(args.database)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
