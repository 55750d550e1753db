"""PushActionStore's two statements of a /sync's unread counts: what evaluation and the
counts need, and recording what evaluation found."""

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


def counts(inputs, room: str) -> list[tuple[str, int, int]]:
    return sorted((c.thread_id, c.notifications, c.highlights) for c in inputs[room].stored)


async def test_record_stores_what_evaluation_found_and_the_read_counts_it(services):
    store = PushActionStore(services.db)
    await store.record("@u:test", {
        ROOM: ([PushAction(5, "main", False), PushAction(6, "main", True), PushAction(7, "$root", False),
                PushAction(2, "main", False)], 7, 3),
        OTHER_ROOM: ([], 9, 0),
    })
    # The action already read (2 <= 3) is not stored; the evaluated positions move.
    assert await stored(services.db, "@u:test") == [
        (ROOM, 5, "main", False), (ROOM, 6, "main", True), (ROOM, 7, "$root", False)]
    assert await store.evaluated_up_to("@u:test", ROOM) == 7
    assert await store.evaluated_up_to("@u:test", OTHER_ROOM) == 9
    inputs = await store.unread_inputs("@u:test", {ROOM: 7, OTHER_ROOM: 9}, ("@u:test",), 1000)
    assert counts(inputs, ROOM) == [("$root", 1, 0), ("main", 2, 1)]
    assert counts(inputs, OTHER_ROOM) == []
    # Only those up to the position asked for.
    assert counts(await store.unread_inputs("@u:test", {ROOM: 6}, (), 1000), ROOM) == [("main", 2, 1)]


async def test_record_drops_what_was_read_and_keeps_an_event_once(services):
    store = PushActionStore(services.db)
    await store.record("@u:test", {ROOM: ([PushAction(4, "main", False), PushAction(6, "main", True)], 6, 0)})
    # A second evaluation (another device's sync) finds event 6 again, differently, and
    # event 8; the unthreaded receipt is at 4.
    await store.record("@u:test", {ROOM: ([PushAction(6, "main", False), PushAction(8, "$root", False)], 8, 4)})
    assert await stored(services.db, "@u:test") == [(ROOM, 6, "main", True), (ROOM, 8, "$root", False)]
    assert await store.evaluated_up_to("@u:test", ROOM) == 8
    # An older evaluation recorded late moves nothing back.
    await store.record("@u:test", {ROOM: ([], 7, 0)})
    assert await store.evaluated_up_to("@u:test", ROOM) == 8


class _InTransaction:
    """A Database stand-in whose statements run in one transaction of ``conn``."""

    def __init__(self, conn):
        self.execute = conn.execute


async def test_recording_commits_without_waiting_for_the_wal_flush(services):
    # Derived data, evaluated again if a crash loses it: the statement that records it
    # turns synchronous_commit off for its own transaction (an fsync less per /sync wake).
    async with services.db.transaction() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        await PushActionStore(_InTransaction(conn)).record("@u:test", {ROOM: ([PushAction(6, "main", False)], 6, 0)})
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
    async with services.db.transaction() as conn:
        # The next transaction is back to the default.
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
    await store.record(bob.user_id, {room: ([PushAction(position, "main", False)], position, 0)})
    inputs = await store.unread_inputs(bob.user_id, up_to, (bob.user_id,), 1000)
    assert inputs[room].event_ids == [] and inputs[room].evaluated_up_to == position
    assert counts(inputs, room) == [("main", 1, 0)]
    # A receipt of the thread reads the stored actions of that thread, not the others'.
    await store.record(bob.user_id, {room: ([PushAction(position - 1, "$root", True)], position, 0)})
    assert counts(await store.unread_inputs(bob.user_id, up_to, (), 1000), room) == [("$root", 1, 1), ("main", 1, 0)]
    r = await bob.post(f"{V3}/rooms/{room}/receipt/m.read/{second}", {"thread_id": "main"})
    assert r.status == 200, r
    assert counts(await store.unread_inputs(bob.user_id, up_to, (), 1000), room) == [("$root", 1, 1)]


async def test_a_recording_after_an_erasure_writes_nothing(api, services):
    # The recording of a /sync is written after its response: one still to come when the
    # account is erased must not put the user's rows back after the erasure emptied them.
    bob = await api.register("bob")
    store = PushActionStore(services.db)
    await store.record(bob.user_id, {ROOM: ([PushAction(5, "main", False)], 5, 0)})
    await services.erasure.erase_user(bob.user_id)
    assert await stored(services.db, bob.user_id) == []
    await store.record(bob.user_id, {ROOM: ([PushAction(6, "main", False)], 6, 0)})
    assert await stored(services.db, bob.user_id) == []
    assert await store.evaluated_up_to(bob.user_id, ROOM) is None
