"""One process against two on one database (docs/scaling.md): prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_two_processes [--database DSN] [--messages 50]

For one and for two processes (same config, `run --port`), measures:
  - sequential send throughput (one client);
  - concurrent send throughput: 20 clients into 5 rooms (with two processes, the
    clients spread over both);
  - send -> long-poll wake latency p50/p99 (with two processes, the sender on one
    process and the syncer on the other).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import aiohttp
import asyncpg

from tests.e2e.server_process import ServerProcess


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

    def on(self, base: str) -> "Client":
        other = Client(self.session, base)
        other.token, other.user_id = self.token, self.user_id
        return other

    async def send(self, room_id: str, body: str) -> str:
        self._txn += 1
        data = await self.call("PUT", f"/rooms/{room_id}/send/m.room.message/b{self._txn}{uuid.uuid4().hex[:6]}",
                               {"msgtype": "m.text", "body": body})
        return data["event_id"]


async def sequential(session, bases: list[str], count: int, prefix: str) -> float:
    client = await Client(session, bases[0]).register(f"seq{prefix}")
    room = (await client.call("POST", "/createRoom", {}))["room_id"]
    start = time.perf_counter()
    for n in range(count):
        await client.send(room, f"message {n}")
    return count / (time.perf_counter() - start)


async def concurrent(session, bases: list[str], per_client: int, prefix: str) -> float:
    clients = [await Client(session, bases[i % len(bases)]).register(f"tp{prefix}_{i}") for i in range(20)]
    rooms = []
    for r in range(5):
        owner = clients[r * 4]
        room = (await owner.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        rooms.append(room)
        for c in clients[r * 4 + 1:(r + 1) * 4]:
            await c.call("POST", f"/join/{room}", {})

    async def run(i: int, c: Client) -> None:
        for n in range(per_client):
            await c.send(rooms[i // 4], f"message {n}")

    start = time.perf_counter()
    await asyncio.gather(*(run(i, c) for i, c in enumerate(clients)))
    return 20 * per_client / (time.perf_counter() - start)


async def latency(session, bases: list[str], count: int, prefix: str) -> list[float]:
    # The sender on the first process, the syncer on the last (the other, with two).
    alice = await Client(session, bases[0]).register(f"lat{prefix}_alice")
    bob = await Client(session, bases[-1]).register(f"lat{prefix}_bob")
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


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(label: str, bases: list[str], messages: int) -> None:
    prefix = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        seq = await sequential(session, bases, messages * 4, prefix)
        rate = await concurrent(session, bases, messages, prefix)
        samples = await latency(session, bases, 200, prefix)
    print(f"{label}: sequential send {seq:.0f} msg/s; 20 concurrent clients {rate:.0f} msg/s; "
          f"send->wake p50 {statistics.median(samples):.1f} ms, p99 {pct(samples, 0.99):.1f} ms")


async def fresh_database(admin_dsn: str) -> str:
    name = f"hs_bench2_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return urlunparse(urlparse(admin_dsn)._replace(path="/" + name))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--messages", type=int, default=50, help="messages per client in the concurrent run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for processes in (1, 2):
            dsn = await fresh_database(args.database)
            first = ServerProcess(Path(directory) / f"p{processes}a", dsn, server_name="bench.local")
            servers = [first]
            first.start()
            try:
                if processes == 2:
                    second = first.sibling(Path(directory) / f"p{processes}b")
                    second.start()
                    servers.append(second)
                await measure(f"{processes} process{'es' if processes > 1 else ''}",
                              [s.base_url for s in servers], args.messages)
            finally:
                for server in reversed(servers):
                    server.stop()


if __name__ == "__main__":
    asyncio.run(main())
