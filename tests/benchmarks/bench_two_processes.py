"""One process against two on one database (docs/scaling.md): prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_two_processes [--database DSN] [--messages 50]

For one and for two processes (same config, `run --port`), measures:
  - sequential send throughput (one client);
  - concurrent send throughput: 20 clients into 5 rooms (with two processes, the
    clients spread over both: each room's four on both processes, which write forks
    of the room that their next events join, and each room's on one process);
  - send -> long-poll wake latency p50/p99 (with two processes, the sender on one
    process and the syncer on the other);
  - the CPU per message of the concurrent runs: each server process, every PostgreSQL
    process of the machine, and the benchmark's clients (more telling than a rate on a
    machine whose speed varies).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from tests.benchmarks.bench_messaging import Client, latency, throughput
from tests.benchmarks.harness import CpuMeter, fresh_database
from tests.e2e.server_process import ServerProcess


async def sequential(session, bases: list[str], count: int, prefix: str) -> float:
    client = await Client(session, bases[0]).register(f"seq{prefix}")
    room = (await client.call("POST", "/createRoom", {}))["room_id"]
    start = time.perf_counter()
    for n in range(count):
        await client.send(room, f"message {n}")
    return count / (time.perf_counter() - start)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(label: str, bases: list[str], pids: list[int], messages: int) -> None:
    prefix = uuid.uuid4().hex[:6]
    shared, apart_cpu = CpuMeter(pids), CpuMeter(pids)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        seq = await sequential(session, bases, messages * 4, prefix)
        rate = await throughput(session, bases, messages, prefix, around=shared)
        apart = await throughput(session, bases, messages, prefix + "r", rooms_apart=True, around=apart_cpu)
        # The sender on the first process, the syncer on the last (the other, with two).
        samples = await latency(session, bases[0], bases[-1], 200, prefix)
    print(f"{label}: sequential send {seq:.0f} msg/s; 20 concurrent clients {rate:.0f} msg/s "
          f"({apart:.0f} msg/s with each room's clients on one process); "
          f"send->wake p50 {statistics.median(samples):.1f} ms, p99 {pct(samples, 0.99):.1f} ms")
    print(f"  CPU per message, 20 clients: {shared.per_item_ms(20 * messages)}; "
          f"each room's on one process: {apart_cpu.per_item_ms(20 * messages)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--messages", type=int, default=50, help="messages per client in the concurrent run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for processes in (1, 2):
            async with fresh_database(args.database, "hs_bench2") as dsn:
                first = ServerProcess(Path(directory) / f"p{processes}a", dsn, server_name="bench.local")
                servers = [first]
                first.start()
                try:
                    if processes == 2:
                        second = first.sibling(Path(directory) / f"p{processes}b")
                        second.start()
                        servers.append(second)
                    await measure(f"{processes} process{'es' if processes > 1 else ''}",
                                  [s.base_url for s in servers], [s.process.pid for s in servers], args.messages)
                finally:
                    for server in reversed(servers):
                        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
