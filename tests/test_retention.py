"""Retention: a room's m.room.retention max_lifetime (or the server's default) purges old
messages from /messages and the database; state and the room keep working; cached
remote media unused for remote_media_max_age goes with its files. The job's pass is run
directly with a "now" in the future instead of waiting."""

from __future__ import annotations

from homeserver.config import RetentionConfig
from homeserver.services.clock import now_ms
from homeserver.services.retention import RetentionJob, room_lifetime_ms
from homeserver.storage.retention import RetentionStore
from media.app_keys import MEDIA
from tests.helpers import Api

V3 = "/_matrix/client/v3"
MINUTE = 60_000
DAY = 86_400_000


async def _room_with_history(api: Api, retention: dict | None):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(name="Short-lived", invite=[bob.user_id])
    await bob.join(room)
    if retention is not None:
        r = await alice.put(f"{V3}/rooms/{room}/state/m.room.retention", retention)
        assert r.status == 200, r
    old = [await alice.send_text(room, f"old {i}") for i in range(3)] + [await bob.send_text(room, "old reply")]
    last = await alice.send_text(room, "newest")
    return alice, bob, room, old, last


async def _timeline_ids(user, room: str) -> list[str]:
    page = await user.get(f"{V3}/rooms/{room}/messages", params={"dir": "b", "limit": "100"})
    assert page.status == 200, page
    return [e["event_id"] for e in page["chunk"]]


async def _in_db(api: Api, event_ids: list[str]) -> int:
    return await api.services.db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::text[])", event_ids)


async def test_room_retention_purges_old_messages_and_keeps_state(api: Api):
    alice, bob, room, old, last = await _room_with_history(api, {"max_lifetime": MINUTE})
    other_room = await alice.create_room(name="No policy")
    kept = await alice.send_text(other_room, "kept forever")
    kept_older = await alice.send_text(other_room, "kept too")
    state_before = await bob.get(f"{V3}/rooms/{room}/state")
    since = (await bob.sync())["next_batch"]
    job = RetentionJob(RetentionConfig(enabled=True), RetentionStore(api.services.db), api.services.events)

    # Not yet a minute old: nothing goes.
    assert (await job.run_once(now_ms())).events_purged == 0
    report = await job.run_once(now_ms() + 10 * MINUTE)
    assert report.events_purged == len(old) and report.rooms == 1

    # Gone from /messages and from the database; the newest event stays.
    ids = await _timeline_ids(bob, room)
    assert not set(old) & set(ids) and last in ids
    assert await _in_db(api, old) == 0 and await _in_db(api, [last]) == 1
    assert not await api.services.db.fetchval(
        "SELECT count(*) FROM event_edges WHERE event_id = ANY($1::text[])", old)
    # The context of a purged event: not found (not served from a cache).
    assert (await bob.get(f"{V3}/rooms/{room}/event/{old[0]}")).status == 404
    # State survives, whole.
    state_after = await bob.get(f"{V3}/rooms/{room}/state")
    assert sorted(e["event_id"] for e in state_after.body) == sorted(e["event_id"] for e in state_before.body)
    # A room without a policy keeps everything.
    assert {kept, kept_older} <= set(await _timeline_ids(alice, other_room))

    # The room still works: send, sync (incremental and initial), paginate.
    after = await bob.send_text(room, "after the purge")
    timeline = (await alice.sync())["rooms"]["join"][room]["timeline"]["events"]
    assert after in [e["event_id"] for e in timeline]
    incremental = (await bob.sync(since=since))["rooms"]["join"][room]["timeline"]["events"]
    assert [e["event_id"] for e in incremental] == [after]
    assert (await _timeline_ids(alice, room))[:2] == [after, last]
    # The next pass (still ten minutes ahead): the former newest event is old now, and
    # goes; the new newest stays; then nothing is left to purge.
    assert (await job.run_once(now_ms() + 10 * MINUTE)).events_purged == 1
    assert await _in_db(api, [last]) == 0 and await _in_db(api, [after]) == 1
    assert (await job.run_once(now_ms() + 10 * MINUTE)).events_purged == 0
    assert (await _timeline_ids(bob, room))[0] == after


async def test_server_default_lifetime_and_allowed_bounds(api: Api):
    alice, bob, room, old, last = await _room_with_history(api, {"max_lifetime": 1000})
    store = RetentionStore(api.services.db)
    # The room asks for one second; the server allows no less than a day.
    bounded = RetentionJob(RetentionConfig(enabled=True, allowed_lifetime_min=86400), store, api.services.events)
    assert (await bounded.run_once(now_ms() + 10 * MINUTE)).events_purged == 0
    assert (await bounded.run_once(now_ms() + 2 * DAY)).events_purged == len(old)
    assert await _in_db(api, old) == 0

    plain = await alice.create_room(name="Default policy")
    plain_old = [await alice.send_text(plain, "a"), await alice.send_text(plain, "b")]
    await alice.send_text(plain, "newest")
    default = RetentionJob(RetentionConfig(enabled=True, default_max_lifetime=30 * 86400), store,
                           api.services.events)
    assert (await default.run_once(now_ms() + DAY)).events_purged == 0
    assert (await default.run_once(now_ms() + 31 * DAY)).events_purged == len(plain_old)
    assert await _in_db(api, plain_old) == 0


def test_room_lifetime_rules():
    config = RetentionConfig(enabled=True, allowed_lifetime_max=7 * 86400)
    assert room_lifetime_ms(config, None) is None
    assert room_lifetime_ms(config, {"max_lifetime": 1000}) == 1000
    assert room_lifetime_ms(config, {"max_lifetime": 30 * DAY}) == 7 * DAY
    # Not a positive integer: no policy.
    assert room_lifetime_ms(config, {"max_lifetime": "1000"}) is None
    assert room_lifetime_ms(config, {"max_lifetime": True}) is None
    assert room_lifetime_ms(RetentionConfig(default_max_lifetime=3600), {}) == 3_600_000


async def test_old_remote_media_cache_entries_are_deleted(api: Api):
    repository = api.client.app[MEDIA]

    async def body():
        yield b"a picture from another server" * 100

    cached = await repository.store_remote("remote.example", "abcdef", body(), "image/png", "r.png")
    path = repository.content.path(cached.sha256)
    assert path.is_file()
    job = RetentionJob(RetentionConfig(enabled=True, remote_media_max_age=90 * 86400),
                       RetentionStore(api.services.db), api.services.events)
    job.remote_media = repository
    assert (await job.run_once(now_ms() + DAY)).remote_media_purged == 0
    assert await api.services.media.get_remote("remote.example", "abcdef") is not None
    assert (await job.run_once(now_ms() + 91 * DAY)).remote_media_purged == 1
    assert await api.services.media.get_remote("remote.example", "abcdef") is None
    assert not path.exists()


async def test_the_job_runs_with_the_app_when_enabled(api: Api):
    # The app's own job (retention disabled in the test config) did not start; enabled, it
    # does, handed to the leader election as the app hands it (this process leads).
    assert api.services.retention._task is None
    cluster = api.services.cluster
    assert cluster.leader
    job = RetentionJob(RetentionConfig(enabled=True), RetentionStore(api.services.db), api.services.events,
                       leader_gate=cluster)
    lifecycle = job.lifecycle(None)
    await lifecycle.__anext__()
    assert job._task is not None and not job._task.done()
    try:
        await lifecycle.__anext__()
    except StopAsyncIteration:
        pass
    assert job._task is None
    # Ended with the app: a later leadership would not start it again.
    assert (job.start, job.stop) not in cluster._leader_jobs
