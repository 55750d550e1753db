"""Purge history: Synapse's docs/admin_api/purge_history_api.md, run in the background with
its status kept in the database; and the deletion of a room's forward extremities (rooms.md)."""

from __future__ import annotations

from homeserver.services.clock import now_ms
from tests.admin.helpers import V1, admin_services, assert_admin_only, make_admin, q

ROOMS = "/_matrix/client/v3/rooms"
FUTURE = 10 * 60_000


async def _room_with_history(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(name="Chatty", invite=[bob.user_id])
    await bob.join(room)
    old = [await alice.send_text(room, f"old {i}") for i in range(3)] + [await bob.send_text(room, "reply")]
    newest = await alice.send_text(room, "newest")
    return alice, bob, room, old, newest


async def _in_db(api, event_ids):
    return await api.services.db.fetchval(
        "SELECT count(*) FROM events WHERE event_id = ANY($1::text[])", list(event_ids))


async def _purge(admin, api, path, body):
    r = await admin.post(path, body)
    assert r.status == 200 and set(r.body) == {"purge_id"}, r
    await admin_services(api).history_purger.wait_idle()
    status = await admin.get(f"{V1}/purge_history_status/{r['purge_id']}")
    assert status.status == 200, status
    return status.body


async def _timeline(user, room):
    page = await user.get(f"{ROOMS}/{room}/messages", params={"dir": "b", "limit": "100"})
    assert page.status == 200, page
    return [e["event_id"] for e in page["chunk"]]


async def test_purge_history_is_admin_only(api):
    alice, _, room, old, _ = await _room_with_history(api)
    for method, path, body in [
        ("POST", f"{V1}/purge_history/{room}", {"purge_up_to_ts": now_ms()}),
        ("POST", f"{V1}/purge_history/{room}/{q(old[1])}", {}),
        ("GET", f"{V1}/purge_history_status/some-id", None),
        ("DELETE", f"{V1}/rooms/{room}/forward_extremities", None),
    ]:
        await assert_admin_only(api, method, path, body, user=alice)
    assert await _in_db(api, old) == len(old)


async def test_local_events_stay_unless_delete_local_events(api):
    admin = await make_admin(api)
    alice, bob, room, old, newest = await _room_with_history(api)
    state_before = sorted(e["event_id"] for e in (await alice.get(f"{ROOMS}/{room}/state")).body)
    # A message of a remote user (its sender rewritten in place: every test user is local).
    remote = await bob.send_text(room, "from afar")
    await api.services.db.execute("UPDATE events SET sender = '@carol:remote.example' WHERE event_id = $1", remote)
    last = await alice.send_text(room, "last")

    # By default only the remote user's message goes: local ones may be the only copies.
    body = await _purge(admin, api, f"{V1}/purge_history/{room}", {"purge_up_to_ts": now_ms() + FUTURE})
    assert body == {"status": "complete"}
    assert await _in_db(api, [remote]) == 0
    assert await _in_db(api, old + [newest, last]) == len(old) + 2

    # With delete_local_events: every old message but the newest event of the room.
    body = await _purge(admin, api, f"{V1}/purge_history/{room}",
                        {"purge_up_to_ts": now_ms() + FUTURE, "delete_local_events": True})
    assert body == {"status": "complete"}
    assert await _in_db(api, old + [newest]) == 0 and await _in_db(api, [last]) == 1
    # Not served from a cache, not in /messages; the state is whole; the room still works.
    assert (await bob.get(f"{ROOMS}/{room}/event/{old[0]}")).status == 404
    ids = await _timeline(bob, room)
    assert last in ids and not set(old) & set(ids)
    state_after = sorted(e["event_id"] for e in (await alice.get(f"{ROOMS}/{room}/state")).body)
    assert state_after == state_before
    after = await bob.send_text(room, "still here")
    assert (await _timeline(alice, room))[:2] == [after, last]


async def test_purge_up_to_an_event_keeps_it_and_what_follows(api):
    admin = await make_admin(api)
    alice, bob, room, old, newest = await _room_with_history(api)
    # The event in the path.
    body = await _purge(admin, api, f"{V1}/purge_history/{room}/{q(old[2])}", {"delete_local_events": True})
    assert body == {"status": "complete"}
    assert await _in_db(api, old[:2]) == 0 and await _in_db(api, old[2:] + [newest]) == 3
    # The event in the body; a timestamp beside it is not the bound.
    body = await _purge(admin, api, f"{V1}/purge_history/{room}",
                        {"purge_up_to_event_id": old[3], "purge_up_to_ts": 0, "delete_local_events": True})
    assert body == {"status": "complete"}
    assert await _in_db(api, [old[2]]) == 0 and await _in_db(api, [old[3], newest]) == 2
    # A time in the past purges nothing.
    body = await _purge(admin, api, f"{V1}/purge_history/{room}", {"purge_up_to_ts": 0, "delete_local_events": True})
    assert body == {"status": "complete"}
    assert await _in_db(api, [old[3], newest]) == 2


async def test_purge_history_refusals(api):
    admin = await make_admin(api)
    alice, _, room, old, _ = await _room_with_history(api)
    other = await alice.create_room()
    elsewhere = await alice.send_text(other, "in another room")
    for body in ({"purge_up_to_ts": "yesterday"}, {"delete_local_events": "yes", "purge_up_to_ts": 1},
                 {"purge_up_to_ts": 1.5}, {"purge_up_to_event_id": 5}):
        r = await admin.post(f"{V1}/purge_history/{room}", body)
        assert r.status == 400 and r.errcode in ("M_BAD_JSON", "M_INVALID_PARAM"), (body, r)
    r = await admin.post(f"{V1}/purge_history/{room}", {})
    assert r.status == 400 and r.errcode == "M_UNKNOWN", r
    r = await admin.post(f"{V1}/purge_history/{room}", {"purge_up_to_ts": -1})
    assert r.status == 400, r
    r = await admin.post(f"{V1}/purge_history/{room}/{q(elsewhere)}", {})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await admin.post(f"{V1}/purge_history/{room}/{q('$nope')}", {})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    r = await admin.post(f"{V1}/purge_history/!unknown:test.local", {"purge_up_to_ts": now_ms()})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    r = await admin.post(f"{V1}/purge_history/not-a-room", {"purge_up_to_ts": now_ms()})
    assert r.status == 400, r
    r = await admin.get(f"{V1}/purge_history_status/nope")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    assert await _in_db(api, old + [elsewhere]) == len(old) + 1


async def test_a_failed_purge_reports_failed_and_one_runs_per_room(api):
    admin = await make_admin(api)
    _, _, room, old, _ = await _room_with_history(api)
    purger = admin_services(api).history_purger

    async def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    original = purger.retention.purge_messages_before
    purger.retention.purge_messages_before = broken
    body = await _purge(admin, api, f"{V1}/purge_history/{room}", {"purge_up_to_ts": now_ms()})
    assert body["status"] == "failed" and "disk on fire" in body["error"], body

    # While a purge of the room is active, another is refused (the job row says so, for
    # every process).
    purger.retention.purge_messages_before = original
    await api.services.db.execute(
        "INSERT INTO purge_history_jobs (purge_id, room_id, status, created_ts, updated_ts)"
        " VALUES ('elsewhere', $1, 'active', $2, $2)", room, now_ms())
    r = await admin.post(f"{V1}/purge_history/{room}", {"purge_up_to_ts": now_ms()})
    assert r.status == 400, r
    assert (await admin.get(f"{V1}/purge_history_status/elsewhere")).body == {"status": "active"}
    # A job left active by a stopped process long ago is failed at the next start.
    await api.services.db.execute("UPDATE purge_history_jobs SET updated_ts = 0 WHERE purge_id = 'elsewhere'")
    await purger.fail_interrupted_jobs()
    r = await admin.get(f"{V1}/purge_history_status/elsewhere")
    assert r["status"] == "failed" and r["error"], r
    body = await _purge(admin, api, f"{V1}/purge_history/{room}", {"purge_up_to_ts": now_ms()})
    assert body == {"status": "complete"}
    assert await _in_db(api, old) == len(old)


async def test_delete_forward_extremities_leaves_the_newest(api):
    admin = await make_admin(api)
    alice, _, room, old, newest = await _room_with_history(api)
    db = api.services.db
    # Extremities as a room left by a federation bug would have them.
    for event_id in old[:2]:
        await db.execute("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)", room, event_id)
    api.services.pipeline.room_written_elsewhere(room, membership=False)  # it reads all three
    r = await admin.get(f"{V1}/rooms/{room}/forward_extremities")
    assert r.status == 200 and r["count"] == 3, r
    assert {x["event_id"] for x in r["results"]} == {newest, *old[:2]}

    r = await admin.delete(f"{V1}/rooms/{room}/forward_extremities")
    assert r.status == 200 and r.body == {"deleted": 2}, r
    r = await admin.get(f"{V1}/rooms/{room}/forward_extremities")
    assert r["count"] == 1 and r["results"][0]["event_id"] == newest, r
    # The next event has the one left as its only prev event.
    after = await alice.send_text(room, "after")
    event = await api.services.events.get_event(after)
    assert list(event.prev_event_ids) == [newest]
    assert (await admin.delete(f"{V1}/rooms/{room}/forward_extremities")).body == {"deleted": 0}
    r = await admin.get(f"{V1}/rooms/{room}/forward_extremities")
    assert [x["event_id"] for x in r["results"]] == [after]

    r = await admin.delete(f"{V1}/rooms/!unknown:test.local/forward_extremities")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    assert (await admin.delete(f"{V1}/rooms/not-a-room/forward_extremities")).status == 400
