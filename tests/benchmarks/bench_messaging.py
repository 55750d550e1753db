"""Messaging benchmark: prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_messaging [--database DSN]
    .venv/bin/python -m tests.benchmarks.bench_messaging --base-url http://127.0.0.1:8008 [--pid PID]

Starts the real server process (on a fresh database in the given PostgreSQL, or
the embedded one) and measures:
  - messages per second sent by 20 concurrent clients into 5 rooms;
  - send -> other user's long-poll /sync return latency (median, p99, 200 messages);
  - initial /sync time for a user in 50 rooms with 200 messages each;
  - the server's resident memory idle and after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.benchmarks.harness import fresh_database
from tests.e2e.server_process import ServerProcess


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session = session
        self.base = base + "/_matrix/client/v3"
        self.token = ""
        self.user_id = ""
        self._txn = 0

    async def call(self, method: str, path: str, body=None, params=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(method, self.base + path, json=body, params=params, headers=headers) as r:
            data = json.loads(await r.text())
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: {r.status} {data}")
            return data

    async def register(self, name: str) -> "Client":
        data = await self.call("POST", "/register", {
            "username": name, "password": "benchmark password", "auth": {"type": "m.login.dummy"}})
        self.token, self.user_id = data["access_token"], data["user_id"]
        return self

    async def send(self, room_id: str, body: str) -> str:
        self._txn += 1
        data = await self.call("PUT", f"/rooms/{room_id}/send/m.room.message/b{self._txn}",
                               {"msgtype": "m.text", "body": body})
        return data["event_id"]


async def throughput(session, bases: list[str], messages_per_client: int, prefix: str,
                     rooms_apart: bool = False, around: Any = None) -> float:
    """Messages per second of 20 clients sending into 5 rooms (4 each), spread over ``bases``:
    the clients of one room on different servers, or (``rooms_apart``) on the same one.
    ``around``: a context manager entered for the sending only (after the registrations and
    joins), to measure it."""
    clients = [Client(session, bases[(i // 4 if rooms_apart else i) % len(bases)]) for i in range(20)]
    await asyncio.gather(*(c.register(f"tp{prefix}_{i}") for i, c in enumerate(clients)))
    rooms = []
    for r in range(5):
        owner = clients[r * 4]
        room = (await owner.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        rooms.append(room)
        for c in clients[r * 4 + 1:(r + 1) * 4]:
            await c.call("POST", f"/join/{room}", {})

    async def run(i: int, c: Client) -> None:
        for n in range(messages_per_client):
            await c.send(rooms[i // 4], f"message {n}")

    with around if around is not None else contextlib.nullcontext():
        start = time.perf_counter()
        await asyncio.gather(*(run(i, c) for i, c in enumerate(clients)))
        elapsed = time.perf_counter() - start
    return 20 * messages_per_client / elapsed


async def latency(session, sender_base: str, syncer_base: str, count: int, prefix: str) -> list[float]:
    """Milliseconds from a send on ``sender_base`` to the wake of a long poll on ``syncer_base``."""
    alice = await Client(session, sender_base).register(f"lat{prefix}_alice")
    bob = await Client(session, syncer_base).register(f"lat{prefix}_bob")
    room = (await alice.call("POST", "/createRoom", {"invite": [bob.user_id]}))["room_id"]
    await bob.call("POST", f"/join/{room}", {})
    since = (await bob.call("GET", "/sync", params={"timeout": "0"}))["next_batch"]
    samples = []
    for n in range(count):
        poll = asyncio.create_task(bob.call("GET", "/sync", params={"timeout": "30000", "since": since}))
        await asyncio.sleep(0.005)  # let the long poll reach the server and wait
        start = time.perf_counter()
        event_id = await alice.send(room, f"ping {n}")
        while True:
            data = await poll
            since = data["next_batch"]
            events = data["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])
            if any(e["event_id"] == event_id for e in events):
                break
            poll = asyncio.create_task(bob.call("GET", "/sync", params={"timeout": "30000", "since": since}))
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def initial_sync(session, base: str, rooms: int, per_room: int, prefix: str) -> list[float]:
    user = Client(session, base)
    await user.register(f"many{prefix}")
    room_ids = [(await user.call("POST", "/createRoom", {"name": f"room {i}"}))["room_id"] for i in range(rooms)]
    sem = asyncio.Semaphore(16)

    async def fill(room: str) -> None:
        for n in range(per_room):
            async with sem:
                await user.send(room, f"history {n}")

    await asyncio.gather(*(fill(r) for r in room_ids))
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        data = await user.call("GET", "/sync", params={"timeout": "0"})
        timings.append((time.perf_counter() - start) * 1000)
        assert len(data["rooms"]["join"]) == rooms
    return timings


async def run_all(base_url: str, pid: int | None, messages_per_client: int, prefix: str) -> None:
    idle = rss_mb(pid) if pid else None
    async with aiohttp.ClientSession() as session:
        rate = await throughput(session, [base_url], messages_per_client, prefix)
        samples = await latency(session, base_url, base_url, 200, prefix)
        initial = await initial_sync(session, base_url, 50, 200, prefix)
    after = rss_mb(pid) if pid else None
    samples.sort()
    print(f"send throughput, 20 clients into 5 rooms: {rate:.0f} messages/s")
    print(f"send -> long-poll /sync latency over {len(samples)} messages: "
          f"median {statistics.median(samples):.1f} ms, p99 {samples[int(len(samples) * 0.99) - 1]:.1f} ms")
    print(f"initial /sync, 50 rooms x 200 messages: median {statistics.median(initial):.0f} ms "
          f"(min {min(initial):.0f}, max {max(initial):.0f}, 5 runs)")
    if idle is not None:
        print(f"server resident memory: idle {idle:.0f} MB, after the run {after:.0f} MB")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", help="PostgreSQL DSN of a server to create a fresh database in")
    parser.add_argument("--base-url", help="benchmark an already running homeserver (ours or another, "
                        "e.g. Synapse with open registration) instead of starting one")
    parser.add_argument("--pid", type=int, help="with --base-url: the server's pid, for its memory")
    parser.add_argument("--messages-per-client", type=int, default=50)
    args = parser.parse_args()
    # User names of a run are fresh, so a running server can be benchmarked again.
    prefix = uuid.uuid4().hex[:6]

    if args.base_url:
        await run_all(args.base_url.rstrip("/"), args.pid, args.messages_per_client, prefix)
        return

    # With --database a fresh database there (dropped afterwards), else the embedded PostgreSQL.
    database = fresh_database(args.database) if args.database else contextlib.nullcontext(None)
    async with database as dsn:
        with tempfile.TemporaryDirectory() as directory:
            server = ServerProcess(Path(directory), dsn, server_name="bench.local")
            server.start(timeout=120)
            try:
                await asyncio.sleep(1)
                await run_all(server.base_url, server.process.pid, args.messages_per_client, prefix)
            finally:
                server.stop()

if __name__ == "__main__":
    asyncio.run(main())
