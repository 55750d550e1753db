"""Federation destinations: Synapse's docs/usage/administration/admin_api/federation.md."""

from __future__ import annotations

import logging
import time

from tests.admin.helpers import V1, admin_services, assert_admin_only, make_admin, q

DESTINATIONS = V1 + "/federation/destinations"
FIELDS = {"destination", "retry_last_ts", "retry_interval", "failure_ts", "last_successful_stream_ordering"}


async def _destination(api, name: str, failures: int = 0, retry_after_ts: int = 0) -> None:
    await api.services.db.execute(
        "INSERT INTO federation_destinations (destination, failures, retry_after_ts) VALUES ($1, $2, $3)",
        name, failures, retry_after_ts,
    )


async def test_destination_endpoints_are_admin_only(api):
    alice = await api.register("alice")
    await _destination(api, "a.example", failures=1, retry_after_ts=1)
    for method, path in [
        ("GET", DESTINATIONS), ("GET", DESTINATIONS + "/a.example"), ("GET", DESTINATIONS + "/a.example/rooms"),
        ("POST", DESTINATIONS + "/a.example/reset_connection"),
    ]:
        await assert_admin_only(api, method, path, {} if method == "POST" else None, user=alice)
    # Refused before anything changed.
    assert (await api.services.db.fetchval(
        "SELECT failures FROM federation_destinations WHERE destination = 'a.example'")) == 1


async def test_list_pages_orders_and_filters(api):
    admin = await make_admin(api)
    now = int(time.time() * 1000)
    await _destination(api, "b.example")
    await _destination(api, "a.example", failures=1, retry_after_ts=now + 5_000)
    await _destination(api, "c.other", failures=3, retry_after_ts=now + 20_000)

    r = await admin.get(DESTINATIONS)
    assert r.status == 200, r
    assert r["total"] == 3 and "next_token" not in r.body
    assert [d["destination"] for d in r["destinations"]] == ["a.example", "b.example", "c.other"]
    assert all(set(d) == FIELDS for d in r["destinations"])
    healthy = r["destinations"][1]
    assert healthy == {"destination": "b.example", "retry_last_ts": 0, "retry_interval": 0, "failure_ts": None,
                       "last_successful_stream_ordering": None}
    # Three failures in a row: waits of 5 s, 10 s, then 20 s (the sender's doubling from 5 s).
    failing = r["destinations"][2]
    assert failing["retry_interval"] == 20_000
    assert failing["retry_last_ts"] == now
    assert failing["failure_ts"] == now - 15_000

    r = await admin.get(DESTINATIONS, params={"limit": "2"})
    assert [d["destination"] for d in r["destinations"]] == ["a.example", "b.example"]
    assert r["total"] == 3 and r["next_token"] == "2"
    r = await admin.get(DESTINATIONS, params={"from": r["next_token"], "limit": "2"})
    assert [d["destination"] for d in r["destinations"]] == ["c.other"] and "next_token" not in r.body

    r = await admin.get(DESTINATIONS, params={"dir": "b"})
    assert [d["destination"] for d in r["destinations"]] == ["c.other", "b.example", "a.example"]
    r = await admin.get(DESTINATIONS, params={"order_by": "retry_interval", "dir": "b"})
    assert [d["destination"] for d in r["destinations"]] == ["c.other", "a.example", "b.example"]
    r = await admin.get(DESTINATIONS, params={"order_by": "failure_ts"})
    assert [d["destination"] for d in r["destinations"]] == ["c.other", "a.example", "b.example"]

    r = await admin.get(DESTINATIONS, params={"destination": "EXAMPLE"})
    assert [d["destination"] for d in r["destinations"]] == ["a.example", "b.example"] and r["total"] == 2
    r = await admin.get(DESTINATIONS, params={"destination": "nowhere"})
    assert r.body == {"destinations": [], "total": 0}


async def test_list_refuses_bad_parameters(api):
    admin = await make_admin(api)
    for params in ({"from": "-1"}, {"limit": "-5"}, {"limit": "ten"}, {"dir": "up"}, {"order_by": "failures"}):
        r = await admin.get(DESTINATIONS, params=params)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (params, r)
    for params in ({"from": "x"}, {"dir": "sideways"}):
        r = await admin.get(DESTINATIONS + "/a.example/rooms", params=params)
        assert r.status == 400, (params, r)


async def test_details_of_a_destination(api):
    admin = await make_admin(api)
    await _destination(api, "a.example")
    r = await admin.get(f"{DESTINATIONS}/{q('a.example')}")
    assert r.status == 200 and r.body == {"destination": "a.example", "retry_last_ts": 0, "retry_interval": 0,
                                          "failure_ts": None, "last_successful_stream_ordering": None}
    for path in (f"{DESTINATIONS}/nowhere.example", f"{DESTINATIONS}/nowhere.example/rooms"):
        r = await admin.get(path)
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", (path, r)


async def test_rooms_shared_with_a_destination(api):
    admin = await make_admin(api)
    await _destination(api, "remote.example")
    rooms = sorted([await admin.create_room() for _ in range(3)])
    # A remote member's join in the current state (as a federated join leaves it); one left again.
    for room_id, membership in [(rooms[0], "join"), (rooms[1], "join"), (rooms[2], "leave")]:
        await api.services.db.execute(
            "INSERT INTO current_state (room_id, type, state_key, event_id, membership, changed_at)"
            " VALUES ($1, 'm.room.member', '@bob:remote.example', $2, $3, 0)",
            room_id, f"$fake-{membership}-{room_id}", membership,
        )
    # Another server's member is not remote.example's.
    await api.services.db.execute(
        "INSERT INTO current_state (room_id, type, state_key, event_id, membership, changed_at)"
        " VALUES ($1, 'm.room.member', '@carol:other.remote.example', '$fake-carol', 'join', 0)",
        rooms[2],
    )
    latest = await api.services.db.fetchval("SELECT max(stream_ordering) FROM events WHERE room_id = $1", rooms[0])

    r = await admin.get(f"{DESTINATIONS}/remote.example/rooms")
    assert r.status == 200, r
    assert r.body == {"rooms": [{"room_id": rooms[0], "stream_ordering": latest},
                                {"room_id": rooms[1], "stream_ordering": r["rooms"][1]["stream_ordering"]}],
                      "total": 2}
    assert isinstance(r["rooms"][1]["stream_ordering"], int)
    r = await admin.get(f"{DESTINATIONS}/remote.example/rooms", params={"limit": "1", "dir": "b"})
    assert [x["room_id"] for x in r["rooms"]] == [rooms[1]] and r["total"] == 2 and r["next_token"] == "1"
    r = await admin.get(f"{DESTINATIONS}/remote.example/rooms", params={"from": "1", "dir": "b"})
    assert [x["room_id"] for x in r["rooms"]] == [rooms[0]] and "next_token" not in r.body


async def test_reset_connection_clears_the_backoff(api, caplog):
    admin = await make_admin(api)
    await _destination(api, "down.example", failures=4, retry_after_ts=int(time.time() * 1000) + 600_000)
    await _destination(api, "fine.example")
    woken = []

    async def destination_up(destination):
        woken.append(destination)
        await api.services.db.execute(
            "UPDATE federation_destinations SET failures = 0, retry_after_ts = 0 WHERE destination = $1",
            destination)

    service = admin_services(api).federation
    assert service.destination_up is not None  # federation runs in the tests: the sender's hook
    service.destination_up = destination_up
    with caplog.at_level(logging.INFO, logger="homeserver.admin"):
        r = await admin.post(f"{DESTINATIONS}/down.example/reset_connection", {})
    assert r.status == 200 and r.body == {}, r
    assert woken == ["down.example"]
    assert "action=reset_federation_connection target=down.example" in caplog.text
    r = await admin.get(f"{DESTINATIONS}/down.example")
    assert r["retry_last_ts"] == 0 and r["retry_interval"] == 0 and r["failure_ts"] is None

    r = await admin.post(f"{DESTINATIONS}/down.example/reset_connection", {})
    assert r.status == 400 and r.errcode == "M_UNKNOWN", r
    r = await admin.post(f"{DESTINATIONS}/fine.example/reset_connection", {})
    assert r.status == 400 and r.errcode == "M_UNKNOWN", r
    r = await admin.post(f"{DESTINATIONS}/nowhere.example/reset_connection", {})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r


async def test_reset_connection_through_the_sender(api):
    """The real hook: the sender ends the backoff in the table (and its own, in memory)."""
    admin = await make_admin(api)
    await _destination(api, "down.example", failures=2, retry_after_ts=int(time.time() * 1000) + 600_000)
    r = await admin.post(f"{DESTINATIONS}/down.example/reset_connection")
    assert r.status == 200, r
    row = await api.services.db.fetchrow(
        "SELECT failures, retry_after_ts FROM federation_destinations WHERE destination = 'down.example'")
    assert (row["failures"], row["retry_after_ts"]) == (0, 0)
