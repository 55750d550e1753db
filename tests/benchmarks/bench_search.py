"""Search benchmark: prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_search [--database DSN] [--messages 100000] [--rooms 50]

On a fresh database in the given PostgreSQL (default HOMESERVER_TEST_DATABASE or
postgresql://postgres@127.0.0.1:5432/postgres), an in-process server: one user creates
--rooms rooms through the API, then --messages messages are written straight into those
rooms in SQL (as backfilled history, below every live position, with the rooms' real
state, so that history visibility is checked as for any event); each body is ten words of
a 5000-word vocabulary drawn Zipf-like. Prints the latency of POST /search (first page of
10, median of 5) for words from very common to rare, by rank and by recent, and whether
the plan uses the GIN index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time

from homeserver.storage.search import SearchQuery, SearchStore
from tests.benchmarks.harness import in_process_server
from tests.helpers import Api

VOCABULARY = [f"w{i}" for i in range(5000)]
WEIGHTS = [1 / (i + 1) for i in range(5000)]
TERMS = ("w0", "w20", "w400", "w4000", "w20 w400")


async def fill(services, room_ids: list[str], messages: int, sender: str) -> None:
    rnd = random.Random(1)
    groups = {}
    for room_id in room_ids:
        row = await services.db.fetchrow(
            "SELECT state_group_after FROM events WHERE room_id = $1 ORDER BY stream_ordering DESC LIMIT 1", room_id)
        groups[room_id] = row["state_group_after"]
    lowest = await services.events.lowest_stream_ordering()
    rows = []
    for n in range(messages):
        room_id = room_ids[n % len(room_ids)]
        event_id = f"$bench{n}"
        body = " ".join(rnd.choices(VOCABULARY, WEIGHTS, k=10))
        event = {"type": "m.room.message", "room_id": room_id, "sender": sender, "origin_server_ts": n,
                 "content": {"msgtype": "m.text", "body": body}, "depth": 1, "prev_events": [], "auth_events": []}
        rows.append((event_id, room_id, min(lowest, 0) - 1 - n, 1, "m.room.message", sender, n,
                     json.dumps(event), groups[room_id], groups[room_id]))
    await services.db.pool.copy_records_to_table("events", records=rows, columns=[
        "event_id", "room_id", "stream_ordering", "depth", "type", "sender", "origin_server_ts", "json",
        "state_group_before", "state_group_after"])
    await services.db.execute("VACUUM ANALYZE events")


async def run(dsn: str, messages: int, rooms: int) -> None:
    async with in_process_server(dsn, "bench_search") as (api, services):
        await measure(api, services, messages, rooms)


async def measure(api: Api, services, messages: int, rooms: int) -> None:
    alice = await api.register("alice")
    room_ids = [await alice.create_room() for _ in range(rooms)]
    started = time.perf_counter()
    await fill(services, room_ids, messages, alice.user_id)
    print(f"{messages} messages in {rooms} rooms written in {time.perf_counter() - started:.1f} s"
          " (the index filled by the inserts)")
    for term in TERMS:
        for order_by in ("rank", "recent"):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                r = await alice.post("/_matrix/client/v3/search", {"search_categories": {"room_events": {
                    "search_term": term, "order_by": order_by}}})
                times.append((time.perf_counter() - started) * 1000)
                assert r.status == 200, r
            answer = r["search_categories"]["room_events"]
            print(f"  {term!r:12} {order_by:6}  count {answer['count']:6}  page of {len(answer['results'])}:"
                  f" median {statistics.median(times):7.1f} ms")
    plan = await SearchStore(services.db).explain(SearchQuery("w4000", room_ids, ["m.room.message"]))
    print("plan uses the GIN index events_search:", "events_search" in plan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=os.environ.get(
        "HOMESERVER_TEST_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rooms", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.database, args.messages, args.rooms))


if __name__ == "__main__":
    main()
