"""Events purged on one process (retention, services/retention.py), or of a user erased there,
are dropped from the caches of the others too (services/cluster_hooks.py "gone", "erased")."""

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


async def test_an_erasure_on_one_process_prunes_the_events_the_others_cached(tmp_path, database_dsn):
    """As when `homeserver erase-user` runs beside the server: the server's cached copy of a
    message the user can no longer redact (a room they left) is served pruned too."""
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice = await b.register("alice")
        bob = await b.register("bob")
        room = await alice.create_room(preset="public_chat")
        await bob.join(room)
        secret = await bob.send_text(room, "my old secret")
        r = await alice.get(f"/_matrix/client/v3/rooms/{room}/event/{secret}")
        assert r["content"]["body"] == "my old secret"  # in B's event cache now
        assert (await bob.post(f"/_matrix/client/v3/rooms/{room}/leave", {})).status == 200

        await a.services.erasure.erase_user(bob.user_id)
        for _ in range(250):
            r = await alice.get(f"/_matrix/client/v3/rooms/{room}/event/{secret}")
            if r["content"] == {}:
                break
            await asyncio.sleep(0.02)
        assert r.status == 200 and r["content"] == {}, r
