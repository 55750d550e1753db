"""/sync v3 benchmark: prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_sync [--database DSN] [--rooms 50] [--messages 200]

Starts the real server process on a fresh database in the given PostgreSQL and measures:
  - initial /sync of a user in --rooms rooms x --messages messages: the first one after
    the bulk load, the best and median of 5 warm ones, and the median first one after a
    restart of the server (cold caches) over 7 restarts, beside the median of the three
    after each (warm again);
  - 20 concurrent since-token syncs (timeline limit 50) of 20 users in 5 rooms with
    1,000+ messages each: wall time and server CPU seconds (from /proc/PID/stat);
  - an incremental sync after 100 new events, and one with nothing new: server CPU ms
    (mean of 20) and wall ms;
then, with an in-process server (so that queries can be counted), the database queries
of one initial and one incremental /sync for a user in 5 and in 50 rooms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.benchmarks.bench_messaging import Client
from tests.benchmarks.harness import count_queries, cpu_seconds, fresh_database, in_process_server
from tests.e2e.server_process import ServerProcess

LIMIT_50 = json.dumps({"room": {"timeline": {"limit": 50}}})
# CPU time is read in clock ticks (10 ms): means over many runs.
RUNS = 20
RESTARTS = 7


async def sync(client: Client, since: str | None = None, filter_: str | None = None) -> dict[str, Any]:
    params = {"timeout": "0"}
    if since:
        params["since"] = since
    if filter_:
        params["filter"] = filter_
    return await client.call("GET", "/sync", params=params)


async def fill(clients: list[Client], rooms: list[str], per_room: int) -> None:
    sem = asyncio.Semaphore(16)

    async def one(room: str, i: int) -> None:
        for n in range(per_room):
            async with sem:
                await clients[(i + n) % len(clients)].send(room, f"history {n}")

    await asyncio.gather(*(one(r, i) for i, r in enumerate(rooms)))


async def initial_syncs(session: aiohttp.ClientSession, server: ServerProcess, rooms: int, per_room: int,
                        prefix: str) -> None:
    user = Client(session, server.base_url)
    await user.register(f"many{prefix}")
    room_ids = [(await user.call("POST", "/createRoom", {"name": f"room {i}"}))["room_id"] for i in range(rooms)]
    started = time.perf_counter()
    await fill([user], room_ids, per_room)
    print(f"{rooms} rooms x {per_room} messages sent in {time.perf_counter() - started:.1f} s")

    async def timed() -> float:
        start = time.perf_counter()
        data = await sync(user)
        assert len(data["rooms"]["join"]) == rooms
        return (time.perf_counter() - start) * 1000

    first = await timed()
    warm = [await timed() for _ in range(5)]
    # Several restarts: one first sync is one sample of a noisy machine.
    after_restart, again = [], []
    for _ in range(RESTARTS):
        server.stop()
        server.start(timeout=120)
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as fresh:  # the old connections died with the process
            user.session = fresh
            after_restart.append(await timed())
            again.extend([await timed() for _ in range(3)])
    user.session = session
    print(f"initial /sync, {rooms} rooms x {per_room} messages: first after the load {first:.0f} ms, "
          f"warm best {min(warm):.0f} ms, median {statistics.median(warm):.0f} ms; "
          f"first after a restart, median of {RESTARTS}: {statistics.median(after_restart):.0f} ms "
          f"(the next three: median {statistics.median(again):.0f} ms; "
          f"ratio {statistics.median(after_restart) / statistics.median(again):.2f})")


async def concurrent_syncs(session: aiohttp.ClientSession, server: ServerProcess, prefix: str,
                           per_room: int) -> None:
    clients = [Client(session, server.base_url) for _ in range(20)]
    await asyncio.gather(*(c.register(f"cc{prefix}_{i}") for i, c in enumerate(clients)))
    rooms = []
    for r in range(5):
        room = (await clients[0].call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        rooms.append(room)
        await asyncio.gather(*(c.call("POST", f"/join/{room}", {}) for c in clients[1:]))
    tokens = [(await sync(c, filter_=LIMIT_50))["next_batch"] for c in clients]
    started = time.perf_counter()
    await fill(clients, rooms, per_room)
    print(f"5 rooms x {per_room} messages from 20 users sent in {time.perf_counter() - started:.1f} s")
    pid = server.process.pid
    for attempt in range(3):
        cpu = cpu_seconds(pid)
        start = time.perf_counter()
        results = await asyncio.gather(*(sync(c, t, LIMIT_50) for c, t in zip(clients, tokens)))
        wall = time.perf_counter() - start
        cpu = cpu_seconds(pid) - cpu
        assert all(len(r["rooms"]["join"]) == 5 for r in results)
        print(f"20 concurrent since-token syncs (limit 50) over 5 rooms x {per_room} messages, run {attempt + 1}:"
              f" wall {wall * 1000:.0f} ms, server CPU {cpu:.2f} s")

    # Incremental sync after 100 new events (in the 5 rooms), one user.
    reader = clients[1]
    since = (await sync(reader, filter_=LIMIT_50))["next_batch"]
    cpus, walls = [], []
    for _ in range(RUNS):
        await fill(clients, rooms, 20)
        await asyncio.sleep(0.3)  # let the server finish what the sends started
        cpu = cpu_seconds(pid)
        start = time.perf_counter()
        data = await sync(reader, since, LIMIT_50)
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((cpu_seconds(pid) - cpu) * 1000)
        since = data["next_batch"]
    print(f"incremental /sync after 100 new events in 5 rooms: server CPU mean {statistics.mean(cpus):.1f} ms,"
          f" wall median {statistics.median(walls):.1f} ms ({RUNS} runs)")
    # The floor: the same request with nothing new (the server's own cost of a /sync).
    cpus, walls = [], []
    for _ in range(RUNS):
        cpu = cpu_seconds(pid)
        start = time.perf_counter()
        data = await sync(reader, since, LIMIT_50)
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((cpu_seconds(pid) - cpu) * 1000)
        since = data["next_batch"]
    print(f"incremental /sync with nothing new: server CPU mean {statistics.mean(cpus):.1f} ms,"
          f" wall median {statistics.median(walls):.1f} ms ({RUNS} runs)")


async def query_counts(dsn: str) -> None:
    """In process, so that the database calls can be counted."""
    async with in_process_server(dsn, "bench_sq") as (api, services):
        counted = count_queries(services.db)
        for rooms in (5, 50):
            user = await api.register(f"q{rooms}")
            other = await api.register(f"o{rooms}")
            room_ids = []
            for i in range(rooms):
                room_ids.append(await user.create_room(preset="public_chat", name=f"r{i}"))
                await other.join(room_ids[-1])
                await other.send_text(room_ids[-1], "hello")
            await user.sync()
            counted["n"] = 0
            r = await user.sync()
            initial = counted["n"]
            for room in room_ids:
                await other.send_text(room, "news")
            counted["n"] = 0
            await user.sync(since=r["next_batch"])
            print(f"queries per /sync, user in {rooms} rooms: initial {initial},"
                  f" incremental with news in every room {counted['n']}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=os.environ.get(
        "HOMESERVER_TEST_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--busy-messages", type=int, default=1000)
    args = parser.parse_args()
    prefix = uuid.uuid4().hex[:6]
    async with fresh_database(args.database) as dsn:
        with tempfile.TemporaryDirectory() as directory:
            server = ServerProcess(Path(directory), dsn, server_name="bench.local")
            server.start(timeout=120)
            try:
                print(f"server pid {server.process.pid}")
                async with aiohttp.ClientSession() as session:
                    await initial_syncs(session, server, args.rooms, args.messages, prefix)
                    await concurrent_syncs(session, server, prefix, args.busy_messages)
            finally:
                server.stop()
    await query_counts(args.database)


if __name__ == "__main__":
    asyncio.run(main())
