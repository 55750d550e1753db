"""Presence: GET/PUT /presence/{userId}/status, presence in /sync, the idle timeout.

Spec: https://spec.matrix.org/v1.19/client-server-api/#presence
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest

from homeserver.services.clock import now_ms
from homeserver.services.presence import IDLE_MS, OFFLINE_MS
from homeserver.services.tokens import SyncToken
from tests.client.sync_helpers import until_waiting

V3 = "/_matrix/client/v3"


def status_path(user_id: str) -> str:
    return f"{V3}/presence/{quote(user_id)}/status"


def presence_of(sync, user_id: str) -> list[dict]:
    """The contents of the user's m.presence events in a sync response."""
    events = sync["presence"]["events"]
    assert all(e["type"] == "m.presence" for e in events)
    return [e["content"] for e in events if e["sender"] == user_id]


@pytest.fixture
def config_overrides(request):
    # Presence is on by default; one test turns it off through indirect parametrization.
    return getattr(request, "param", {})


async def stored_row(services, user_id: str):
    return await services.db.fetchrow("SELECT * FROM presence WHERE user_id = $1", user_id)


async def partners(api):
    """alice and bob share a room; carol shares none with them."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    return alice, bob, carol, room_id


# PUT and GET


async def test_put_then_get_own_presence(api):
    alice = await api.register("alice")
    r = await alice.put(status_path(alice.user_id), {"presence": "unavailable", "status_msg": "In a meeting"})
    assert r.status == 200 and r.body == {}, r
    r = await alice.get(status_path(alice.user_id))
    assert r.status == 200, r
    assert r["presence"] == "unavailable"
    assert r["status_msg"] == "In a meeting"
    assert r["currently_active"] is False
    assert isinstance(r["last_active_ago"], int) and r["last_active_ago"] >= 0


async def test_put_without_status_msg_clears_it(api):
    alice = await api.register("alice")
    await alice.put(status_path(alice.user_id), {"presence": "online", "status_msg": "Baking"})
    r = await alice.put(status_path(alice.user_id), {"presence": "online"})
    assert r.status == 200, r
    r = await alice.get(status_path(alice.user_id))
    assert r["presence"] == "online" and r["currently_active"] is True
    assert "status_msg" not in r.body


async def test_get_presence_of_room_partner(api):
    alice, bob, _carol, _room = await partners(api)
    r = await bob.get(status_path(alice.user_id))
    assert r.status == 200 and r.body == {"presence": "offline"}, r
    await alice.put(status_path(alice.user_id), {"presence": "online", "status_msg": "Here"})
    r = await bob.get(status_path(alice.user_id))
    assert r.status == 200, r
    assert r["presence"] == "online" and r["status_msg"] == "Here" and r["currently_active"] is True


async def test_get_presence_of_stranger_is_forbidden(api):
    alice, _bob, carol, _room = await partners(api)
    await alice.put(status_path(alice.user_id), {"presence": "online"})
    r = await carol.get(status_path(alice.user_id))
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    r = await carol.get(status_path("@nobody:test.local"))
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r


async def test_presence_no_longer_visible_after_leaving(api):
    alice, bob, _carol, room_id = await partners(api)
    r = await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    assert r.status == 200, r
    r = await bob.get(status_path(alice.user_id))
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r


async def test_put_presence_of_someone_else_is_forbidden(api, services):
    alice, bob, _carol, _room = await partners(api)
    r = await bob.put(status_path(alice.user_id), {"presence": "online"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await stored_row(services, alice.user_id) is None


@pytest.mark.parametrize("body, errcode", [
    ({}, "M_MISSING_PARAM"),
    ({"presence": "busy"}, "M_BAD_JSON"),
    ({"presence": 1}, "M_BAD_JSON"),
    ({"presence": "online", "status_msg": 5}, "M_BAD_JSON"),
    ([], "M_BAD_JSON"),
])
async def test_put_bad_body(api, services, body, errcode):
    alice = await api.register("alice")
    await alice.put(status_path(alice.user_id), {"presence": "unavailable", "status_msg": "Away"})
    before = await stored_row(services, alice.user_id)
    r = await alice.put(status_path(alice.user_id), body)
    assert r.status == 400 and r.errcode == errcode, r
    assert await stored_row(services, alice.user_id) == before


async def test_put_not_json(api, services):
    alice = await api.register("alice")
    r = await alice.request("PUT", status_path(alice.user_id), raw=b"{nope")
    assert r.status == 400 and r.errcode == "M_NOT_JSON", r
    assert await stored_row(services, alice.user_id) is None


async def test_bad_user_id_and_missing_token(api):
    alice = await api.register("alice")
    for method in ("GET", "PUT"):
        r = await alice.request(method, f"{V3}/presence/not-a-user/status", {"presence": "online"})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
        r = await api.request(method, status_path(alice.user_id), {"presence": "online"})
        assert r.status == 401 and r.errcode == "M_MISSING_TOKEN", r


# /sync


async def test_sync_marks_the_syncer_online_with_one_write(api, services):
    alice = await api.register("alice")
    first = await alice.sync()
    row = await stored_row(services, alice.user_id)
    assert row["state"] == "online"
    # The syncer's own presence is in the initial sync.
    [content] = presence_of(first, alice.user_id)
    assert content["presence"] == "online" and content["currently_active"] is True
    # Syncing again within a minute writes nothing: the row is unchanged.
    second = await alice.sync(since=first["next_batch"])
    await alice.sync()
    assert await stored_row(services, alice.user_id) == row
    # And reports nothing new about oneself.
    assert presence_of(second, alice.user_id) == []


async def test_sync_set_presence_offline_changes_nothing(api, services):
    alice = await api.register("alice")
    await alice.sync(set_presence="offline")
    assert await stored_row(services, alice.user_id) is None
    await alice.put(status_path(alice.user_id), {"presence": "unavailable"})
    await alice.sync(set_presence="offline")
    assert (await alice.get(status_path(alice.user_id)))["presence"] == "unavailable"


async def test_sync_set_presence_unavailable_marks_idle(api):
    alice = await api.register("alice")
    await alice.sync()
    await alice.sync(set_presence="unavailable")
    r = await alice.get(status_path(alice.user_id))
    assert r["presence"] == "unavailable" and r["currently_active"] is False
    # A sync marking online brings them back.
    await alice.sync()
    assert (await alice.get(status_path(alice.user_id)))["presence"] == "online"


async def test_sync_bad_set_presence(api, services):
    alice = await api.register("alice")
    r = await alice.get(f"{V3}/sync", params={"set_presence": "busy"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    assert await stored_row(services, alice.user_id) is None


async def test_chosen_unavailable_survives_syncing(api):
    alice = await api.register("alice")
    await alice.put(status_path(alice.user_id), {"presence": "unavailable", "status_msg": "Away"})
    await alice.sync()
    r = await alice.get(status_path(alice.user_id))
    assert r["presence"] == "unavailable" and r["status_msg"] == "Away"


async def test_initial_sync_has_presence_of_room_partners_only(api):
    alice, bob, carol, _room = await partners(api)
    await alice.put(status_path(alice.user_id), {"presence": "online", "status_msg": "Hi"})
    await carol.put(status_path(carol.user_id), {"presence": "online"})
    sync = await bob.sync()
    [content] = presence_of(sync, alice.user_id)
    assert content["presence"] == "online" and content["status_msg"] == "Hi"
    assert content["currently_active"] is True and content["last_active_ago"] >= 0
    assert presence_of(sync, carol.user_id) == []
    senders = {e["sender"] for e in sync["presence"]["events"]}
    assert senders == {alice.user_id, bob.user_id}


async def test_initial_sync_leaves_out_offline_partners(api):
    alice, bob, _carol, _room = await partners(api)
    await alice.put(status_path(alice.user_id), {"presence": "offline"})
    sync = await bob.sync()
    assert presence_of(sync, alice.user_id) == []


async def test_incremental_sync_has_only_changes(api):
    alice, bob, carol, _room = await partners(api)
    await alice.sync()
    since = (await bob.sync())["next_batch"]
    # Nothing changed: no presence.
    nothing = await bob.sync(since=since)
    assert nothing["presence"]["events"] == []
    await alice.put(status_path(alice.user_id), {"presence": "unavailable", "status_msg": "Lunch"})
    await carol.put(status_path(carol.user_id), {"presence": "unavailable"})
    changed = await bob.sync(since=nothing["next_batch"])
    assert [e["sender"] for e in changed["presence"]["events"]] == [alice.user_id]
    [content] = presence_of(changed, alice.user_id)
    assert content["presence"] == "unavailable" and content["status_msg"] == "Lunch"
    assert content["currently_active"] is False
    # Going offline is a change too.
    await alice.put(status_path(alice.user_id), {"presence": "offline"})
    gone = await bob.sync(since=changed["next_batch"])
    assert [c["presence"] for c in presence_of(gone, alice.user_id)] == ["offline"]
    again = await bob.sync(since=gone["next_batch"])
    assert again["presence"]["events"] == []


async def test_incremental_sync_has_presence_of_newly_shared_users(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    await alice.put(status_path(alice.user_id), {"presence": "online", "status_msg": "Hi"})
    await carol.put(status_path(carol.user_id), {"presence": "unavailable"})
    since = (await bob.sync())["next_batch"]
    assert presence_of(await bob.sync(since=since), alice.user_id) == []
    # Bob joins alice's room: he learns her presence, unchanged as it is.
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    alice_since = (await alice.sync())["next_batch"]
    r = await bob.sync(since=since)
    [content] = presence_of(r, alice.user_id)
    assert content["presence"] == "online" and content["status_msg"] == "Hi"
    assert presence_of(r, carol.user_id) == []
    # Carol joins: both members learn hers.
    await carol.join(room_id)
    r = await bob.sync(since=r["next_batch"])
    assert [c["presence"] for c in presence_of(r, carol.user_id)] == ["unavailable"]
    assert presence_of(r, alice.user_id) == []
    r = await alice.sync(since=alice_since)
    assert [c["presence"] for c in presence_of(r, carol.user_id)] == ["unavailable"]


async def test_sync_token_carries_presence_position_and_old_tokens_parse(api):
    alice, bob, _carol, _room = await partners(api)
    await alice.sync()
    sync = await bob.sync()
    token = SyncToken.parse(sync["next_batch"])
    assert token.presence > 0
    # A six-part token of before presence reads as presence position 0: all changes.
    old = SyncToken.parse("s" + "_".join(sync["next_batch"][1:].split("_")[:6]))
    assert old.presence == 0
    r = await bob.sync(since=old.serialize())
    assert presence_of(r, alice.user_id)


async def test_presence_filter(api):
    alice, bob, _carol, _room = await partners(api)
    await alice.sync()
    r = await bob.sync(filter=json.dumps({"presence": {"not_types": ["m.presence"]}}))
    assert r["presence"]["events"] == []
    r = await bob.sync(filter=json.dumps({"presence": {"senders": [alice.user_id]}}))
    assert [e["sender"] for e in r["presence"]["events"]] == [alice.user_id]


async def test_long_poll_woken_by_partners_presence_change(api):
    alice, bob, _carol, _room = await partners(api)
    await alice.sync()
    since = (await bob.sync())["next_batch"]
    poll = asyncio.create_task(bob.sync(since=since, timeout=20_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    await alice.put(status_path(alice.user_id), {"presence": "unavailable"})
    result = await asyncio.wait_for(poll, 10)
    assert [c["presence"] for c in presence_of(result, alice.user_id)] == ["unavailable"]


async def test_long_poll_returns_only_partners_changes(api, services):
    alice, bob, carol, _room = await partners(api)
    since = (await bob.sync())["next_batch"]
    poll = asyncio.create_task(bob.sync(since=since, timeout=20_000))
    await asyncio.wait_for(until_waiting(api.services), 10)
    # A stranger's change is not news to bob: his poll waits on.
    await carol.put(status_path(carol.user_id), {"presence": "unavailable"})
    await asyncio.wait_for(until_waiting(api.services), 10)
    await alice.put(status_path(alice.user_id), {"presence": "online"})
    result = await asyncio.wait_for(poll, 10)
    assert {e["sender"] for e in result["presence"]["events"]} == {alice.user_id}


# The idle timeout


async def test_idle_sweep_unavailable_then_offline(api, services):
    alice, bob, _carol, _room = await partners(api)
    await alice.sync()
    since = (await bob.sync())["next_batch"]
    start = now_ms()
    presence = services.presence
    assert await presence.sweep(start + IDLE_MS - 2 * 60_000) == []
    assert sorted(await presence.sweep(start + IDLE_MS + 60_000)) == sorted([alice.user_id, bob.user_id])
    r = await bob.get(status_path(alice.user_id))
    assert r["presence"] == "unavailable" and r["currently_active"] is False
    idle = await bob.sync(since=since, set_presence="offline")
    assert [c["presence"] for c in presence_of(idle, alice.user_id)] == ["unavailable"]
    # Unavailable users stay so until OFFLINE_MS more have passed.
    assert await presence.sweep(start + IDLE_MS + OFFLINE_MS - 60_000) == []
    assert sorted(await presence.sweep(start + IDLE_MS + OFFLINE_MS + 60_000)) == sorted(
        [alice.user_id, bob.user_id])
    assert (await bob.get(status_path(alice.user_id)))["presence"] == "offline"
    gone = await bob.sync(since=idle["next_batch"], set_presence="offline")
    assert [c["presence"] for c in presence_of(gone, alice.user_id)] == ["offline"]
    # Syncing again brings alice back online.
    await alice.sync()
    assert (await bob.get(status_path(alice.user_id)))["presence"] == "online"


async def test_idle_sweep_spares_users_still_syncing(api, services):
    alice = await api.register("alice")
    await alice.sync()
    start = now_ms()
    # The sweep sees what syncing wrote: a user seen since is not idle.
    assert await services.presence.sweep(start + IDLE_MS - 1000) == []
    assert (await alice.get(status_path(alice.user_id)))["presence"] == "online"


async def test_idle_sweep_takes_long_gone_users_offline_at_once(api, services):
    # As at a restart after a long stop: stale online users go straight to offline.
    alice = await api.register("alice")
    await alice.sync()
    assert await services.presence.sweep(now_ms() + IDLE_MS + OFFLINE_MS + 1000) == [alice.user_id]
    assert (await alice.get(status_path(alice.user_id)))["presence"] == "offline"


async def test_chosen_unavailable_goes_offline_after_the_full_timeout(api, services):
    alice = await api.register("alice")
    await alice.put(status_path(alice.user_id), {"presence": "unavailable"})
    start = now_ms()
    assert await services.presence.sweep(start + IDLE_MS + 60_000) == []
    assert await services.presence.sweep(start + IDLE_MS + OFFLINE_MS + 1000) == [alice.user_id]
    assert (await alice.get(status_path(alice.user_id)))["presence"] == "offline"


# Presence turned off


@pytest.mark.parametrize("config_overrides", [{"presence": {"enabled": False}}], indirect=True)
async def test_disabled_presence(api, services):
    alice, bob, _carol, _room = await partners(api)
    r = await alice.put(status_path(alice.user_id), {"presence": "online", "status_msg": "Hi"})
    assert r.status == 200 and r.body == {}, r
    first = await bob.sync()
    await alice.sync()
    assert first["presence"]["events"] == []
    again = await bob.sync(since=first["next_batch"])
    assert again["presence"]["events"] == []
    r = await bob.get(status_path(alice.user_id))
    assert r.status == 200 and r.body == {"presence": "offline"}, r
    assert await services.db.fetchval("SELECT count(*) FROM presence") == 0
    # Bad input is still refused.
    r = await alice.put(status_path(alice.user_id), {"presence": "busy"})
    assert r.status == 400 and r.errcode == "M_BAD_JSON", r


async def test_app_start_sweeps_stale_users_offline(api, services):
    # As after a restart: a user last seen long ago is taken offline by the sweep the
    # app starts with, without waiting for the sweep interval.
    from aiohttp.test_utils import TestClient, TestServer

    from homeserver.app import create_app

    alice = await api.register("alice")
    long_ago = now_ms() - IDLE_MS - OFFLINE_MS - 60_000
    await services.presence.set_presence(alice.user_id, "online", "Back soon", now=long_ago)
    assert (await alice.get(status_path(alice.user_id)))["presence"] == "online"
    await services.presence.stop_sweeping()  # the earlier run's sweeper, gone with it
    client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        async def until_offline() -> None:
            while (await services.presence.get_presence(alice.user_id))["presence"] != "offline":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until_offline(), 10)
    finally:
        await client.close()
    r = await alice.get(status_path(alice.user_id))
    assert r["presence"] == "offline" and r["status_msg"] == "Back soon"


async def test_the_sweep_runs_on_the_leader_and_at_once_on_taking_the_lead(api, services, database_dsn):
    # Another process of the cluster holds the lead: this one does not sweep. Once that
    # process is gone, this one takes the lead (its next try) and sweeps at once, without
    # waiting for the sweep interval.
    import asyncpg
    from aiohttp.test_utils import TestClient, TestServer

    from homeserver.app import create_app
    from homeserver.services.cluster import LEADER_LOCK_ID

    cluster = services.cluster
    await cluster._lose_leadership()
    async with cluster._listener_lock:
        assert await cluster._listener.fetchval("SELECT pg_advisory_unlock($1)", LEADER_LOCK_ID)
    other_leader = await asyncpg.connect(database_dsn)
    client = None
    try:
        assert await other_leader.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_ID)
        alice = await api.register("alice")
        long_ago = now_ms() - IDLE_MS - OFFLINE_MS - 60_000
        await services.presence.set_presence(alice.user_id, "online", None, now=long_ago)
        client = TestClient(TestServer(create_app(services)))
        await client.start_server()
        await asyncio.sleep(0.3)
        assert not cluster.leader
        assert (await services.presence.get_presence(alice.user_id))["presence"] == "online"

        await other_leader.close()

        async def until_offline() -> None:
            while (await services.presence.get_presence(alice.user_id))["presence"] != "offline":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until_offline(), 10)
        assert cluster.leader
    finally:
        if not other_leader.is_closed():
            await other_leader.close()
        if client is not None:
            await client.close()
