"""Events purged on one process (retention, services/retention.py) are dropped from the
caches of the others too (services/cluster_hooks.py "gone"): no process serves them."""

from __future__ import annotations

import asyncio

from homeserver.services.clock import now_ms
from tests.services.test_tip_writes import _two_processes

MINUTE = 60_000


async def test_events_purged_by_retention_on_one_process_leave_the_others_caches(tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice = await a.register("alice")
        room = await alice.create_room(preset="public_chat")
        r = await alice.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.retention", {"max_lifetime": MINUTE})
        assert r.status == 200, r
        old = [await alice.send_text(room, f"old {n}") for n in range(3)]
        await alice.send_text(room, "newest")
        # Process B has read them (as a /context or /event would): they sit in its cache.
        assert set(await b.services.events.get_events(old)) == set(old)

        purged = await a.services.retention.purge_room(room, now_ms() + 10 * MINUTE)
        assert purged >= len(old)
        for _ in range(250):
            if all(b.services.events._cache.get(event_id) is None for event_id in old):
                break
            await asyncio.sleep(0.02)
        assert await b.services.events.get_events(old) == {}
