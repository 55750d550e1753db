"""Two processes of our server writing one room at once, shared with a real Synapse.

Messages written at the same moment on both processes make forks of the room's graph
(docs/scaling.md, "Rooms"): Synapse must take every one of them as a live event, and
the next event, ours or Synapse's, joins the forks again.
"""

from __future__ import annotations

import asyncio

import asyncpg

from tests.federation.interop_helpers import invited_to, our_client, register_ours, timeline_events

MESSAGES_EACH = 12


async def _our_tip(dsn: str, room_id: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["event_id"] for r in await conn.fetch(
            "SELECT event_id FROM forward_extremities WHERE room_id = $1", room_id)]
    finally:
        await conn.close()


async def _most_prev_events(dsn: str, room_id: str) -> int:
    """The most prev events any of our messages of the room cites (2 or more: a fork joined)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM event_edges g JOIN events e ON e.event_id = g.event_id"
            " WHERE e.room_id = $1 AND e.type = 'm.room.message' GROUP BY g.event_id) AS counts", room_id)
    finally:
        await conn.close()


async def test_messages_written_at_once_on_our_two_processes_all_reach_synapse(synapse, our_server_tls, tmp_path):
    first = our_server_tls
    second = first.sibling(tmp_path / "second")
    second.start()
    try:
        theirs = await synapse.register("grandma")
        alice = await register_ours(first, "alice2p")
        bob = await register_ours(second, "bob2p")
        async with synapse.client(theirs) as s, our_client(first, alice) as a, our_client(second, bob) as b:
            room_id = await a.create_room(preset="public_chat", room_version="12", name="Both processes")
            await a.invite(room_id, theirs.user_id)
            await s.sync_until(invited_to(room_id), timeout=60)
            await s.join(room_id, via=[first.federation_name])
            await b.join(room_id)
            await a.sync_until(timeline_events(room_id, "m.room.member", membership="join"), timeout=60)

            wanted: set[str] = set()

            async def send_many(client, label):
                for n in range(MESSAGES_EACH):
                    await client.send_text(room_id, f"{label} {n}")
                    wanted.add(f"{label} {n}")

            # Bursts until two messages were written on one tip and joined (the first, mostly).
            for burst in range(5):
                await asyncio.gather(*(send_many(client, f"{burst}{name}")
                                       for client, name in ((a, "a1"), (a, "a2"), (b, "b1"), (b, "b2"))))
                if await _most_prev_events(first.database_dsn, room_id) >= 2:
                    break
            assert await _most_prev_events(first.database_dsn, room_id) >= 2
            seen: set[str] = set()

            def collect(sync: dict) -> bool:
                seen.update(e["content"]["body"] for e in timeline_events(room_id, "m.room.message")(sync))
                return wanted <= seen

            # Synapse shows each of them: none was rejected or soft-failed for its prev events.
            await s.sync_until(collect, timeout=90)

            # Synapse's reply cites its forward extremities: ours, forks included.
            reply = await s.send_text(room_id, "all here")
            for client in (a, b):
                [got] = await client.sync_until(timeline_events(room_id, "m.room.message", body="all here"),
                                                timeout=60)
                assert got["event_id"] == reply
            # Every fork was joined: the reply, or one message of ours after it, is the whole tip.
            joined = await a.send_text(room_id, "after the reply")
            assert await _our_tip(first.database_dsn, room_id) == [joined]
            [after] = await s.sync_until(timeline_events(room_id, "m.room.message", body="after the reply"),
                                         timeout=60)
            assert after["event_id"] == joined
    finally:
        second.stop()
