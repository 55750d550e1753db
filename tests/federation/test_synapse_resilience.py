"""Interop with a real Synapse when servers go down, and history from before a join (backfill).

- Catch-up: messages sent while the other server is down arrive, in order, once it is back
  (our sender's durable queue and backoff, woken by the peer's next request; Synapse's
  catch-up, which sends the newest event and lets us fetch the rest with
  /get_missing_events). A kill -9 of our server with PDUs queued loses none of them.
- Backfill both ways: a user who joins a room with history paginates /messages back
  through it, the server asking the other for it with /backfill.

The Synapse of this module retries a destination after 1 s (up to 5 s), instead of
its default 10 minutes, so that the tests wait seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.federation.interop_helpers import our_client, register_ours, timeline_events
from tests.federation.synapse_peer import SynapseClient, SynapseInstall, SynapsePeer

FAST_RETRIES = {
    "destination_min_retry_interval": "1s",
    "destination_retry_multiplier": 2,
    "destination_max_retry_interval": "5s",
}


@pytest.fixture(scope="module")
async def synapse(tmp_path_factory, pg_admin_dsn: str, synapse_install: SynapseInstall):
    peer = SynapsePeer(tmp_path_factory.mktemp("synapse"), pg_admin_dsn, synapse_install,
                       federation=FAST_RETRIES)
    try:
        await peer.start()
        yield peer
    finally:
        await peer.close()


async def messages_page(client: SynapseClient, room_id: str, token: str | None, limit: int) -> dict:
    query = {"dir": "b", "limit": str(limit)}
    if token is not None:
        query["from"] = token
    return await client.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages", query=query)


async def paginate_back(client: SynapseClient, room_id: str, limit: int = 10, max_pages: int = 30) -> list[dict]:
    """The room's events newest first, page by page until the server gives no `end`."""
    events: list[dict] = []
    token = None
    for _ in range(max_pages):
        page = await messages_page(client, room_id, token, limit)
        events.extend(page["chunk"])
        token = page.get("end")
        if token is None:
            return events
    raise AssertionError(f"still paginating after {max_pages} pages: {len(events)} events")


def bodies(events: list[dict], sender: str | None = None) -> list[str]:
    return [e["content"]["body"] for e in events
            if e["type"] == "m.room.message" and (sender is None or e["sender"] == sender)]


async def wait_for_bodies(client: SynapseClient, room_id: str, sender: str, count: int,
                          timeout: float = 90) -> list[str]:
    """The sender's message bodies in the room, oldest first, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(reversed(bodies((await messages_page(client, room_id, None, 100))["chunk"], sender)))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def shared_room(synapse: SynapsePeer, s: SynapseClient, o: SynapseClient) -> str:
    """A public room of the Synapse user that our user joined over federation."""
    room_id = await s.create_room(preset="public_chat", name="Resilience")
    await o.join(room_id, via=[synapse.server_name])
    await s.sync_until(timeline_events(room_id, "m.room.member", membership="join"), timeout=60)
    await o.send_text(room_id, "hello")
    await s.sync_until(timeline_events(room_id, "m.room.message", body="hello"), timeout=60)
    return room_id


async def restart_ours(server: Any, *, kill: bool = False) -> None:
    server.kill() if kill else server.stop()
    await asyncio.to_thread(server.start)


async def test_synapse_down_while_we_send_gets_everything_in_order(synapse, our_server_tls):
    theirs = await synapse.register("downtime_s1")
    ours = await register_ours(our_server_tls, "downtime_o1")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await shared_room(synapse, s, o)
        await synapse.stop()
        sent = [f"while you were away {i}" for i in range(20)]
        for text in sent:
            await o.send_text(room_id, text)
        await synapse.start()
    async with synapse.client(theirs) as s:
        # Their next transaction tells our sender that Synapse is back (no waiting out the backoff).
        await s.send_text(room_id, "back")
        received = await wait_for_bodies(s, room_id, ours.user_id, len(sent) + 1)
        assert received == ["hello", *sent]


async def test_our_server_down_while_synapse_sends_gets_everything_in_order(synapse, our_server_tls):
    theirs = await synapse.register("downtime_s2")
    ours = await register_ours(our_server_tls, "downtime_o2")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await shared_room(synapse, s, o)
    our_server_tls.stop()
    async with synapse.client(theirs) as s:
        sent = [f"from synapse while you slept {i}" for i in range(10)]
        for text in sent:
            await s.send_text(room_id, text)
    await asyncio.to_thread(our_server_tls.start)
    async with our_client(our_server_tls, ours) as o:
        # Our next transaction wakes Synapse's queue for us; it sends its newest event and
        # we fetch the ones before it (/get_missing_events).
        await o.send_text(room_id, "good morning")
        received = await wait_for_bodies(o, room_id, theirs.user_id, len(sent))
        assert received == sent


async def test_kill_9_with_pdus_queued_for_a_down_synapse_loses_nothing(synapse, our_server_tls):
    theirs = await synapse.register("downtime_s3")
    ours = await register_ours(our_server_tls, "downtime_o3")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await shared_room(synapse, s, o)
        await synapse.stop()
        sent = [f"queued before the crash {i}" for i in range(10)]
        for text in sent:
            await o.send_text(room_id, text)
    # No shutdown code runs: what is queued is only what PostgreSQL holds.
    our_server_tls.kill()
    await synapse.start()
    await asyncio.to_thread(our_server_tls.start)
    async with synapse.client(theirs) as s:
        await s.send_text(room_id, "back again")
        received = await wait_for_bodies(s, room_id, ours.user_id, len(sent) + 1)
        assert received == ["hello", *sent]


async def test_we_backfill_history_from_before_our_join(synapse, our_server_tls):
    theirs = await synapse.register("history_s1")
    ours = await register_ours(our_server_tls, "history_o1")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await s.create_room(preset="public_chat", name="Old news")
        sent = [f"history {i}" for i in range(30)]
        for text in sent:
            await s.send_text(room_id, text)
        await o.join(room_id, via=[synapse.server_name])
        events = await paginate_back(o, room_id, limit=10)
        assert bodies(events) == list(reversed(sent))
        # Down to the room's creation, each event once.
        assert events[-1]["type"] == "m.room.create"
        assert len({e["event_id"] for e in events}) == len(events)


async def test_synapse_backfills_history_from_us(synapse, our_server_tls):
    theirs = await synapse.register("history_s2")
    ours = await register_ours(our_server_tls, "history_o2")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await o.create_room(preset="public_chat", name="Our old news")
        sent = [f"our history {i}" for i in range(30)]
        for text in sent:
            await o.send_text(room_id, text)
        await s.join(room_id, via=[our_server_tls.federation_name])
        events = await paginate_back(s, room_id, limit=10)
        assert bodies(events) == list(reversed(sent))
        assert events[-1]["type"] == "m.room.create"
