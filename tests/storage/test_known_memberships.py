"""SyncQueries.memberships reads only the memberships changed since the user's last read
(current_state.changed_at, migration 0025), and still answers every room as it is now:
rows changed by any writer, on this process or another, and rows removed."""

from __future__ import annotations

from typing import Any

from homeserver.storage.sync_queries import SyncQueries
from tests.helpers import record_statements

V3 = "/_matrix/client/v3"


def watch_rooms_read(db: Any) -> list[int]:
    """The number of rooms each memberships read brings back, from now on."""
    counts: list[int] = []
    fetch = db.fetch

    async def watched(sql: str, *args: Any) -> Any:
        rows = await fetch(sql, *args)
        if sql.startswith("WITH mine AS"):
            counts.append(sum(1 for r in rows if r["kind"] == "room"))
        return rows

    db.fetch = watched
    return counts


async def rooms_of(queries: SyncQueries, services: Any, user_id: str) -> dict[str, tuple[str, str]]:
    read = await queries.memberships(user_id, "DEVICE", None, services.sync.event_stream.current())
    return read.rooms


async def bob_joined(api: Any, made: int, joined: int) -> tuple[Any, Any, list[str]]:
    """Alice makes ``made`` public rooms, Bob joins the first ``joined``."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    rooms = [await alice.create_room(preset="public_chat") for _ in range(made)]
    for room in rooms[:joined]:
        await bob.join(room)
    return alice, bob, rooms


async def test_a_read_after_the_first_brings_back_only_the_rooms_changed(api, services):
    alice, bob, rooms = await bob_joined(api, 6, 5)
    queries = SyncQueries(services.db)
    counts = watch_rooms_read(services.db)

    first = await rooms_of(queries, services, bob.user_id)
    assert set(first) == set(rooms[:5])
    await alice.send_text(rooms[0], "a message changes no membership")
    assert await rooms_of(queries, services, bob.user_id) == first
    await bob.join(rooms[5])
    await bob.post(f"{V3}/rooms/{rooms[1]}/leave", {})
    now = await rooms_of(queries, services, bob.user_id)
    assert {r: m for r, (m, _) in now.items()} == {
        **{r: "join" for r in rooms[:6]}, rooms[1]: "leave"}
    assert counts == [5, 0, 2]


async def test_a_change_made_on_another_process_is_read(api, services):
    """Another process writes the membership: nothing tells this one's reads, the rows' positions do."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    here = SyncQueries(services.db)
    assert await rooms_of(here, services, bob.user_id) == {}
    # The pipeline writes as any process would; `here` is not the SyncQueries it knows of.
    await bob.join(room)
    assert (await rooms_of(here, services, bob.user_id))[room][0] == "join"
    await alice.post(f"{V3}/rooms/{room}/kick", {"user_id": bob.user_id})
    assert (await rooms_of(here, services, bob.user_id))[room][0] == "leave"


async def test_a_state_reset_of_a_membership_is_read(api, services):
    """A federated event whose state resolution changes the user's membership writes it
    through apply_current_state_delta: that write moves the row's position too."""
    _alice, bob, (room,) = await bob_joined(api, 1, 1)
    queries = SyncQueries(services.db)
    joined = await rooms_of(queries, services, bob.user_id)
    # Any event id stands in for the membership event the resolution chose.
    stand_in = await services.db.fetchval(
        "SELECT event_id FROM events WHERE room_id = $1 AND type = 'm.room.create'", room)
    async with services.sync.event_stream.allocate() as position:
        async with services.db.transaction() as conn:
            await services.state.apply_current_state_delta(
                conn, room, {("m.room.member", bob.user_id): (stand_in, "leave")}, position)
    after = await rooms_of(queries, services, bob.user_id)
    assert joined[room][0] == "join"
    assert after[room] == ("leave", stand_in)


async def test_a_removed_row_is_noticed(api, services):
    """A purge, or a state reset that drops the key, deletes the row: the count of the
    user's rows tells, even when another room was joined in the same while."""
    _alice, bob, rooms = await bob_joined(api, 3, 2)
    queries = SyncQueries(services.db)
    counts = watch_rooms_read(services.db)
    assert set(await rooms_of(queries, services, bob.user_id)) == set(rooms[:2])
    await services.db.execute(
        "DELETE FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2",
        rooms[0], bob.user_id)
    await bob.join(rooms[2])
    assert set(await rooms_of(queries, services, bob.user_id)) == {rooms[1], rooms[2]}
    # The rooms changed (one), then all of them again (two), as the count did not match.
    assert counts == [2, 1, 2]


async def test_every_write_of_current_state_sets_its_position(services):
    """No writer can leave a row's position unset: the column has no default."""
    column = await services.db.fetchrow(
        "SELECT is_nullable, column_default FROM information_schema.columns"
        " WHERE table_name = 'current_state' AND column_name = 'changed_at'")
    assert column["is_nullable"] == "NO" and column["column_default"] is None



async def test_the_membership_events_of_a_window_are_the_same_read_either_way(api, services):
    """A small window is read from its events, a wide one (or one with the user's rooms
    unknown) room by room: the same events, those of the user's rooms only."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    dave = await api.register("dave")
    rooms = [await alice.create_room(preset="public_chat") for _ in range(3)]
    for room in rooms:
        await bob.join(room)
    elsewhere = await carol.create_room(preset="public_chat")
    known = SyncQueries(services.db)
    after = services.sync.event_stream.current()
    await rooms_of(known, services, bob.user_id)
    await carol.join(rooms[0])
    r = await alice.post(f"{V3}/rooms/{rooms[1]}/invite", {"user_id": dave.user_id})
    assert r.status == 200, r
    await alice.send_text(rooms[2], "no membership")
    await dave.join(elsewhere)
    up_to = services.sync.event_stream.current()
    sent = record_statements(services.db)

    from_events = await known.memberships(bob.user_id, "DEVICE", after, up_to)
    by_room = await SyncQueries(services.db).memberships(bob.user_id, "DEVICE", after, up_to)
    assert ["window_members" in sql for sql in sent] == [True, False]
    expected = [(rooms[0], carol.user_id), (rooms[1], dave.user_id)]
    assert [(e.room_id, e.state_key) for e in from_events.changes] == expected
    assert from_events.changes == by_room.changes
