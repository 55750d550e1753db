"""A user's data at scale: prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_user_data [--messages 2000]

An in-process server on a fresh database in HOMESERVER_TEST_DATABASE (default
postgresql://postgres@127.0.0.1:5432/postgres): alice and bob write --messages
messages each in one room. Then, timed: `export-data` of alice (ExportService, pages
of /messages as the user), the retention pass that purges all but the newest
message (RetentionJob.run_once with a "now" a day ahead), and, on a second room of
the same size, the erasure of alice (one m.room.redaction per message through the
event pipeline). The process's peak resident memory is printed after the export.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from pathlib import Path

from homeserver.config import RetentionConfig
from homeserver.services.clock import now_ms
from homeserver.services.export import ExportService
from homeserver.services.retention import RetentionJob
from homeserver.storage.retention import RetentionStore
from media.app_keys import MEDIA
from tests.benchmarks.harness import in_process_server

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _talk(alice, bob, messages: int) -> str:
    room = await alice.create_room(invite=[bob.user_id])
    await bob.join(room)
    for i in range(messages):
        await alice.send_text(room, f"alice {i}: " + "words " * 10)
        await bob.send_text(room, f"bob {i}")
    return room


async def main(messages: int) -> None:
    admin_dsn = os.environ.get("HOMESERVER_TEST_DATABASE", DEFAULT_DSN)
    directory = Path(tempfile.mkdtemp(prefix="bench-user-data-"))
    async with in_process_server(admin_dsn, "hs_bench_data", log_level="WARNING") as (api, services):
        alice = await api.register("alice")
        bob = await api.register("bob")
        started = time.perf_counter()
        await _talk(alice, bob, messages)
        print(f"setup: {2 * messages} messages in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        summary = await ExportService.for_services(services).export(
            alice.user_id, directory / "export", api.client.app[MEDIA].content)
        took = time.perf_counter() - started
        print(f"export-data: {summary.events} events of {summary.rooms} rooms in {took:.2f} s"
              f" ({summary.events / took:.0f} events/s)")
        print(f"peak resident memory after the export: "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

        job = RetentionJob(RetentionConfig(enabled=True, default_max_lifetime=3600),
                           RetentionStore(services.db), services.events)
        started = time.perf_counter()
        report = await job.run_once(now_ms() + 86_400_000)
        took = time.perf_counter() - started
        print(f"retention: {report.events_purged} events purged in {took:.2f} s"
              f" ({report.events_purged / took:.0f} events/s)")

        await _talk(alice, bob, messages)  # a second room, for the erasure
        started = time.perf_counter()
        done = await services.erasure.erase_user(alice.user_id)
        took = time.perf_counter() - started
        print(f"erase-user: {done['redacted_events']} events redacted in {took:.2f} s"
              f" ({done['redacted_events'] / took:.0f} redactions/s)")

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000, help="messages each of the two users writes")
    asyncio.run(main(parser.parse_args().messages))
