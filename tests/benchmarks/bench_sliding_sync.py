"""Sliding sync benchmark: prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_sliding_sync [--database DSN] [--rooms 500] [--window 20]

On a fresh database in the given PostgreSQL, an in-process server: one user creates
--rooms rooms through the API (a name and one message each). Prints, median of 5:
the first response of a new simplified sliding sync connection (Element X's room
list: window of --window rooms, timeline_limit 1, its required_state), an
incremental response after one new message, an incremental response with nothing new,
and beside them /sync v3 initial and incremental for the same user; with the number of
database queries of each. Then the send -> wake latency (p50, p90 of 200) of another
user's long poll, sliding sync (the same request) beside /sync v3.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any, Awaitable, Callable

from tests.benchmarks.harness import count_queries, in_process_server
from tests.helpers import Api
from tests.e2e.test_sliding_sync_process import REQUIRED_STATE

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def run(dsn: str, rooms: int, window: int) -> None:
    async with in_process_server(dsn, "bench_ss") as (api, services):
        await measure(api, services, rooms, window)


async def timed(label: str, counted: dict[str, int], step: Callable[[], Awaitable[Any]]) -> None:
    times, queries = [], []
    for _ in range(5):
        counted["n"] = 0
        started = time.perf_counter()
        await step()
        times.append((time.perf_counter() - started) * 1000)
        queries.append(counted["n"])
    print(f"  {label:52} median {statistics.median(times):8.1f} ms  first {times[0]:8.1f} ms"
          f"  queries {statistics.median(queries):5.0f}")


async def measure(api: Api, services: Any, rooms: int, window: int) -> None:
    alice = await api.register("alice")
    started = time.perf_counter()
    room_ids = []
    for i in range(rooms):
        room_ids.append(await alice.create_room(name=f"room {i}"))
        await alice.send_text(room_ids[-1], f"hello {i}")
    print(f"{rooms} rooms created in {time.perf_counter() - started:.1f} s; window {window}")
    counted = count_queries(services.db)
    body = {"conn_id": "room-list", "lists": {"all_rooms": {
        "ranges": [[0, window - 1]], "required_state": REQUIRED_STATE, "timeline_limit": 1,
        "filters": {"not_room_types": ["m.space"]}}},
        "extensions": {"account_data": {"enabled": True}, "receipts": {"enabled": True},
                       "typing": {"enabled": True}}}
    state: dict[str, Any] = {}

    async def first() -> None:
        r = await alice.request("POST", SS, body, params={"timeout": "0"})
        assert r.status == 200, r
        state["pos"] = r["pos"]

    async def after_message() -> None:
        await alice.send_text(room_ids[len(state) % rooms], "new")
        counted["n"] = 0
        r = await alice.request("POST", SS, body, params={"timeout": "0", "pos": state["pos"]})
        assert r.status == 200 and r["rooms"], r
        state["pos"] = r["pos"]

    async def nothing_new() -> None:
        r = await alice.request("POST", SS, body, params={"timeout": "0", "pos": state["pos"]})
        assert r.status == 200, r
        state["pos"] = r["pos"]

    async def v3_initial() -> None:
        r = await alice.sync()
        state["since"] = r["next_batch"]

    async def v3_incremental() -> None:
        await alice.send_text(room_ids[0], "new")
        counted["n"] = 0
        r = await alice.sync(since=state["since"])
        state["since"] = r["next_batch"]

    await timed("sliding sync, first response of a connection", counted, first)
    wake_room = room_ids[-1]  # the newest: in the window
    await timed("sliding sync, incremental after one message", counted, after_message)
    await timed("sliding sync, incremental with nothing new", counted, nothing_new)
    await timed("/sync v3 initial", counted, v3_initial)
    await timed("/sync v3 incremental after one message", counted, v3_incremental)
    await wake_latency(api, alice, wake_room, body)


async def wake_latency(api: Api, alice: Any, room_id: str, body: dict[str, Any], samples: int = 200) -> None:
    """Milliseconds from alice's send to the answer of bob's long poll carrying it."""
    bob = await api.register("bob")
    r = await alice.post(f"/_matrix/client/v3/rooms/{room_id}/invite", {"user_id": bob.user_id})
    assert r.status == 200, r
    r = await bob.post(f"/_matrix/client/v3/rooms/{room_id}/join", {})
    assert r.status == 200, r

    async def sliding(pos: str | None) -> tuple[Any, str]:
        params = {"timeout": "30000"} if pos else {"timeout": "0"}
        if pos:
            params["pos"] = pos
        r = await bob.request("POST", SS, body, params=params)
        assert r.status == 200, r
        events = r["rooms"].get(room_id, {}).get("timeline", [])
        return [e["event_id"] for e in events], r["pos"]

    async def v3(since: str | None) -> tuple[Any, str]:
        r = await bob.sync(since=since, timeout=30000) if since else await bob.sync()
        events = r["rooms"]["join"].get(room_id, {}).get("timeline", {}).get("events", [])
        return [e["event_id"] for e in events], r["next_batch"]

    for label, poll in (("sliding sync", sliding), ("/sync v3", v3)):
        _, position = await poll(None)
        times = []
        for n in range(samples + 20):
            waiting = asyncio.ensure_future(poll(position))
            await asyncio.sleep(0.005)  # the long poll reaches the server and waits
            started = time.perf_counter()
            event_id = await alice.send_text(room_id, f"ping {n}")
            while True:
                ids, position = await waiting
                if event_id in ids:
                    break
                waiting = asyncio.ensure_future(poll(position))
            if n >= 20:  # the first ones warm the caches
                times.append((time.perf_counter() - started) * 1000)
        times.sort()
        print(f"  {label + ', send -> long-poll wake':52} p50 {statistics.median(times):8.1f} ms  "
              f"p90 {times[int(0.9 * len(times))]:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=os.environ.get(
        "HOMESERVER_TEST_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--window", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.database, args.rooms, args.window))


if __name__ == "__main__":
    main()
