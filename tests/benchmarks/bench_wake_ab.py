"""Send -> long-poll wake latency of two code trees side by side: prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_wake_ab BEFORE_TREE AFTER_TREE
        [--kind sliding|v3] [--rooms 30] [--blocks 16] [--per-block 25] [--database DSN]

A tree is a checkout of this repository (e.g. `git worktree add /tmp/before <rev>`). Both
servers run at once, each on its own fresh database, and the wakes are measured in
alternating blocks (the order turned around every block). On a machine whose speed
changes from one minute to the next (these 2-core VMs: up to 2x), two runs one after
the other compare the minutes, not the code; this compares the code.

The syncing user is in --rooms rooms and the messages go to the newest one. ``sliding``:
an Element X-like connection (a window of 20 rooms, timeline_limit 1, Element X's
required_state, every extension); ``v3``: /sync with no filter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.benchmarks.bench_messaging import Client
from tests.benchmarks.harness import fresh_database
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_sliding_sync_process import REQUIRED_STATE

SLIDING_SYNC = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
ELEMENT_X = {
    "conn_id": "room-list",
    "lists": {"all_rooms": {"ranges": [[0, 19]], "required_state": REQUIRED_STATE, "timeline_limit": 1}},
    "extensions": {name: {"enabled": True} for name in ("account_data", "receipts", "typing", "e2ee", "to_device")},
}
WARM_UP = 30


class Syncer:
    """A sender and a long-polling syncer in a room of one server."""

    def __init__(self, session: aiohttp.ClientSession, base: str, kind: str):
        self.session, self.base, self.kind = session, base, kind
        self.position: str | None = None

    async def prepare(self, rooms: int) -> None:
        prefix = uuid.uuid4().hex[:6]
        self.sender = await Client(self.session, self.base).register(f"s{prefix}")
        self.syncer = await Client(self.session, self.base).register(f"y{prefix}")
        for i in range(rooms):
            room = (await self.sender.call("POST", "/createRoom", {"preset": "public_chat", "name": f"r{i}"}))
            await self.syncer.call("POST", f"/join/{room['room_id']}", {})
        self.room = room["room_id"]
        await self._poll(0)
        for n in range(WARM_UP):
            await self.wake(n)

    async def _poll(self, timeout: int) -> list[str]:
        """The event ids the room's timeline carries in the next response."""
        headers = {"Authorization": f"Bearer {self.syncer.token}"}
        params = {"timeout": str(timeout)}
        if self.kind == "sliding":
            if self.position:
                params["pos"] = self.position
            async with self.session.post(self.base + SLIDING_SYNC, json=ELEMENT_X, params=params,
                                         headers=headers) as r:
                data: Any = await r.json()
            self.position = data["pos"]
            events = data.get("rooms", {}).get(self.room, {}).get("timeline", [])
        else:
            if self.position:
                params["since"] = self.position
            async with self.session.get(self.base + "/_matrix/client/v3/sync", params=params,
                                        headers=headers) as r:
                data = await r.json()
            self.position = data["next_batch"]
            events = data["rooms"]["join"].get(self.room, {}).get("timeline", {}).get("events", [])
        return [e["event_id"] for e in events]

    async def wake(self, n: int) -> float:
        """Milliseconds from a send to the answer of the long poll carrying it."""
        waiting = asyncio.ensure_future(self._poll(30000))
        await asyncio.sleep(0.005)  # the long poll reaches the server and waits
        started = time.perf_counter()
        event_id = await self.sender.send(self.room, f"ping {n}")
        while event_id not in await waiting:
            waiting = asyncio.ensure_future(self._poll(30000))
        return (time.perf_counter() - started) * 1000


def start_server(tree: Path, directory: Path, dsn: str) -> ServerProcess:
    """A server running the code of ``tree``: `python -m` puts the working directory first on
    sys.path, so the process starts there, with the tree on PYTHONPATH too."""
    here = os.getcwd()
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree)
    os.chdir(tree)
    try:
        server = ServerProcess(directory, dsn, server_name="bench.local")
        server.start(timeout=120)
    finally:
        os.chdir(here)
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved
    return server


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs=2, type=Path, help="the code before and after")
    parser.add_argument("--kind", choices=("sliding", "v3"), default="sliding")
    parser.add_argument("--rooms", type=int, default=30)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--per-block", type=int, default=25)
    parser.add_argument("--database", default=os.environ.get(
        "HOMESERVER_TEST_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        async with contextlib.AsyncExitStack() as stack:
            syncers = []
            session = await stack.enter_async_context(aiohttp.ClientSession())
            for i, tree in enumerate(args.trees):
                dsn = await stack.enter_async_context(fresh_database(args.database, f"hs_wake_ab{i}"))
                server = start_server(tree.resolve(), Path(directory) / f"s{i}", dsn)
                stack.callback(server.stop)
                syncers.append(Syncer(session, server.base_url, args.kind))
            for syncer in syncers:
                await syncer.prepare(args.rooms)
            samples: list[list[float]] = [[] for _ in syncers]
            for block in range(args.blocks):
                for i in (0, 1) if block % 2 == 0 else (1, 0):
                    samples[i].extend([await syncers[i].wake(n) for n in range(args.per_block)])
    for tree, times in zip(args.trees, samples):
        times.sort()
        print(f"{args.kind}, {args.rooms} rooms, {tree}: send -> wake p50 {statistics.median(times):.2f} ms, "
              f"p25 {times[len(times) // 4]:.2f}, p75 {times[3 * len(times) // 4]:.2f} ({len(times)} wakes)")


if __name__ == "__main__":
    asyncio.run(main())
