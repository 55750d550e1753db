"""PushActionStore's two statements of a /sync's unread counts: what evaluation needs,
and recording what it found together with the count."""

from __future__ import annotations

from homeserver.storage.push_actions import PushAction, PushActionStore

V3 = "/_matrix/client/v3"
ROOM = "!room:test"
OTHER_ROOM = "!other:test"


async def stored(db, user_id: str) -> list[tuple[str, int, str, bool]]:
    rows = await db.fetch(
        "SELECT room_id, stream_ordering, thread_id, highlight FROM event_push_actions WHERE user_id = $1"
        " ORDER BY room_id, stream_ordering", user_id)
    return [tuple(r) for r in rows]


async def test_record_and_count_counts_what_it_records(services):
    store = PushActionStore(services.db)
    found = {
        ROOM: ([PushAction(5, "main", False), PushAction(6, "main", True), PushAction(7, "$root", False),
                PushAction(2, "main", False)], 7, 3),
        OTHER_ROOM: ([], 9, 0),
    }
    counts = await store.record_and_count(
        "@u:test", {ROOM: 7, OTHER_ROOM: 9}, {ROOM: {"": 3}, OTHER_ROOM: {}}, found)
    assert sorted((c.thread_id, c.notifications, c.highlights) for c in counts[ROOM]) == [
        ("$root", 1, 0), ("main", 2, 1)]
    assert counts[OTHER_ROOM] == []
    # The action already read (2 <= 3) is not stored; the evaluated positions move.
    assert await stored(services.db, "@u:test") == [
        (ROOM, 5, "main", False), (ROOM, 6, "main", True), (ROOM, 7, "$root", False)]
    assert await store.evaluated_up_to("@u:test", ROOM) == 7
    assert await store.evaluated_up_to("@u:test", OTHER_ROOM) == 9


async def test_record_and_count_drops_what_was_read_and_counts_an_event_once(services):
    store = PushActionStore(services.db)
    await store.record_and_count("@u:test", {ROOM: 6}, {ROOM: {}}, {
        ROOM: ([PushAction(4, "main", False), PushAction(6, "main", True)], 6, 0)})
    # A second evaluation (another device's sync) finds event 6 again, differently, and
    # event 8; the unthreaded receipt is at 4 and the thread's at 8.
    counts = await store.record_and_count("@u:test", {ROOM: 8}, {ROOM: {"": 4, "$root": 8}}, {
        ROOM: ([PushAction(6, "main", False), PushAction(8, "$root", False)], 8, 4)})
    assert [(c.thread_id, c.notifications, c.highlights) for c in counts[ROOM]] == [("main", 1, 1)]
    assert await stored(services.db, "@u:test") == [(ROOM, 6, "main", True), (ROOM, 8, "$root", False)]
    # Counting alone, without anything to record.
    counts = await store.record_and_count("@u:test", {ROOM: 8}, {ROOM: {"": 4}}, {})
    assert sorted((c.thread_id, c.notifications, c.highlights) for c in counts[ROOM]) == [
        ("$root", 1, 0), ("main", 1, 1)]
    counts = await store.record_and_count("@u:test", {ROOM: 7}, {ROOM: {"": 4}}, {})
    assert [(c.thread_id, c.notifications) for c in counts[ROOM]] == [("main", 1)]


class _InTransaction:
    """A Database stand-in whose statements run in one transaction of ``conn``."""

    def __init__(self, conn):
        self.fetch = conn.fetch


async def test_recording_commits_without_waiting_for_the_wal_flush(services):
    # Derived data, evaluated again if a crash loses it: the statement that records it
    # turns synchronous_commit off for its own transaction (an fsync less per /sync wake).
    async with services.db.transaction() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        await PushActionStore(_InTransaction(conn)).record_and_count(
            "@u:test", {ROOM: 6}, {ROOM: {}}, {ROOM: ([PushAction(6, "main", False)], 6, 0)})
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
    async with services.db.transaction() as conn:
        # Counting alone writes nothing, and the next transaction is back to the default.
        await PushActionStore(_InTransaction(conn)).record_and_count("@u:test", {ROOM: 6}, {ROOM: {}}, {})
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
    assert await stored(services.db, "@u:test") == [(ROOM, 6, "main", False)]


async def test_unread_inputs_start_after_the_receipt_the_join_and_the_evaluation(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    quiet = await alice.create_room(preset="public_chat")
    await bob.join(room)
    await bob.join(quiet)
    first = await alice.send_text(room, "one")
    await bob.send_text(room, "mine")
    second = await alice.send_text(room, "two")
    store = PushActionStore(services.db)
    position = (await services.events.get_event(second)).internal["stream_ordering"]
    up_to = {room: position, quiet: position}
    inputs = await store.unread_inputs(bob.user_id, up_to, (bob.user_id,), 1000)
    assert inputs[room].event_ids == [second, first]  # newest first, bob's own left out
    assert inputs[room].joined_at > 0 and inputs[room].evaluated_up_to == 0
    assert inputs[room].member_count == 2
    assert inputs[room].create_event is not None and inputs[room].power_levels_event is not None
    assert inputs[room].member_event is not None
    # Nothing after bob's join in the quiet room: no events, and its state is not read.
    assert inputs[quiet].event_ids == [] and inputs[quiet].create_event is None
    assert inputs[quiet].member_count == 0
    r = await bob.post(f"{V3}/rooms/{room}/receipt/m.read/{first}", {})
    assert r.status == 200, r
    inputs = await store.unread_inputs(bob.user_id, up_to, (bob.user_id,), 1000)
    assert inputs[room].event_ids == [second]
    assert inputs[room].read_positions == {"": (await services.events.get_event(first)).internal["stream_ordering"]}
    assert (await store.unread_inputs(bob.user_id, up_to, (bob.user_id,), 1))[room].event_ids == [second]
    await store.record_and_count(bob.user_id, {room: position}, {room: {}}, {room: ([], position, 0)})
    inputs = await store.unread_inputs(bob.user_id, up_to, (bob.user_id,), 1000)
    assert inputs[room].event_ids == [] and inputs[room].evaluated_up_to == position
