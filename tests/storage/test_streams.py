"""Stream positions shared by several processes (storage/streams.py, services/cluster.py):
no reader skips a position still being written anywhere, and a dead writer stops nothing."""

from __future__ import annotations

import asyncio

from homeserver.services.cluster import Cluster, application_name_for
from homeserver.storage.db import Database
from homeserver.storage.stream_positions import SEQUENCES
from homeserver.storage.streams import StreamIdGenerator


async def _generators(database_dsn: str, count: int) -> tuple[list[Database], list[StreamIdGenerator]]:
    dbs = [await Database.connect(database_dsn, max_size=2) for _ in range(count)]
    streams = [await StreamIdGenerator.from_sequence(db, "events", SEQUENCES["events"]) for db in dbs]
    return dbs, streams


def _tell(sender: StreamIdGenerator, name: str, receivers: list[StreamIdGenerator], position: int | None) -> None:
    for receiver in receivers:
        receiver.remote_finished(name, [position] if position is not None else [], sender.own_bound())


async def test_a_late_commit_on_one_generator_holds_back_the_others(database_dsn):
    dbs, (a, b) = await _generators(database_dsn, 2)
    try:
        a.add_peer("b", b.own_bound())
        b.add_peer("a", a.own_bound())
        slow = a.allocate()
        slow_position = await slow.__aenter__()  # A's write, still committing
        _tell(a, "a", [b], None)
        async with b.allocate() as fast_position:
            pass
        _tell(b, "b", [a], fast_position)
        assert fast_position == slow_position + 1
        # Neither may show B's position: a reader would skip A's when it commits.
        assert a.current() == b.current() == slow_position - 1
        await slow.__aexit__(None, None, None)
        _tell(a, "a", [b], slow_position)
        assert a.current() == b.current() == fast_position
    finally:
        for db in dbs:
            await db.close()


async def test_positions_interleave_from_one_sequence_and_everything_finishes(database_dsn):
    dbs, streams = await _generators(database_dsn, 3)
    names = ["a", "b", "c"]
    try:
        for i, stream in enumerate(streams):
            for j, other in enumerate(streams):
                if i != j:
                    stream.add_peer(names[j], other.own_bound())
        held = []
        for round_ in range(5):
            for i, stream in enumerate(streams):
                allocation = stream.allocate()
                held.append((i, allocation, await allocation.__aenter__()))
        positions = [p for _, _, p in held]
        assert len(set(positions)) == len(positions) and positions == sorted(positions)
        # Finish them in reverse: nothing becomes current until the lowest finishes.
        start = min(positions) - 1
        for i, allocation, position in reversed(held):
            await allocation.__aexit__(None, None, None)
            others = [s for j, s in enumerate(streams) if j != i]
            _tell(streams[i], names[i], others, position)
            if position != min(positions):
                assert all(s.current() == start for s in streams)
        assert all(s.current() == max(positions) for s in streams)
    finally:
        for db in dbs:
            await db.close()


async def test_a_dead_writer_is_dropped_and_the_stream_moves_on(database_dsn):
    dbs, (a, b) = await _generators(database_dsn, 2)
    try:
        b.add_peer("a", a.own_bound())
        doomed = a.allocate()
        lost = await doomed.__aenter__()  # A dies with this in flight: never announced
        _tell(a, "a", [b], None)
        async with b.allocate() as later:
            pass
        assert b.current() == lost - 1
        assert b.waiting_since is not None  # the cluster asks and checks liveness now
        jumps = []
        b.on_jump = jumps.append
        b.drop_peer("a")
        assert b.current() == later and b.waiting_since is None
        # Moved over a position nobody announced: the room change cache is told.
        assert jumps == [later]
    finally:
        for db in dbs:
            await db.close()


async def test_an_allocation_on_its_way_keeps_the_bound_where_it_was(database_dsn, monkeypatch):
    import homeserver.storage.streams as streams_module

    dbs, (a,) = await _generators(database_dsn, 1)
    gate = asyncio.Event()
    real = streams_module.next_position

    async def answer_late(conn, sequence):
        value = await real(conn, sequence)  # the sequence has moved...
        await gate.wait()  # ...but its answer is still on the way
        return value

    monkeypatch.setattr(streams_module, "next_position", answer_late)
    try:
        before = a.own_bound()
        allocation = a.allocate()
        task = asyncio.create_task(allocation.__aenter__())
        await asyncio.sleep(0.05)
        # Meanwhile another process finishes the position after ours.
        a.remote_finished("b", [before + 2], before + 2)
        # Claiming before + 2 now would let a reader skip ours, whatever it turns out to be.
        assert a.own_bound() == before and a.current() == before
        gate.set()
        position = await task
        assert position == before + 1 and a.current() == before
        await allocation.__aexit__(None, None, None)
        assert a.current() == before + 2
    finally:
        for db in dbs:
            await db.close()


async def _cluster(database_dsn: str, instance: str) -> tuple[Database, Cluster]:
    db = await Database.connect(database_dsn, max_size=3, application_name=application_name_for(instance))
    streams = {name: await StreamIdGenerator.from_sequence(db, name, seq) for name, seq in SEQUENCES.items()}
    cluster = Cluster(db, instance, streams)
    await cluster.start()
    return db, cluster


async def _until(condition, limit_s: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        assert loop.time() < deadline
        await asyncio.sleep(0.01)


async def test_clusters_over_notify_hold_back_and_drop_a_killed_process(database_dsn):
    db_a, a = await _cluster(database_dsn, "unit-a")
    # Alone, A takes positions a block at a time.
    async with a.streams["events"].allocate() as alone:
        pass
    assert a.streams["events"]._reserved
    db_b, b = await _cluster(database_dsn, "unit-b")
    try:
        assert not a.solo and not b.solo
        # B's arrival released A's block: B sees A's write, and nobody waits on the unused positions.
        assert not a.streams["events"]._reserved
        assert b.streams["events"].current() >= alone
        async with b.streams["events"].allocate() as first_of_b:
            pass
        await _until(lambda: a.streams["events"].current() == first_of_b)
        assert b.streams["events"].current() == first_of_b
        assert a.leader != b.leader  # one runs the background jobs
        events_a, events_b = a.streams["events"], b.streams["events"]
        slow = events_a.allocate()
        slow_position = await slow.__aenter__()
        async with events_b.allocate() as fast_position:
            pass
        await _until(lambda: events_a._known_max >= fast_position)
        assert events_a.current() < slow_position and events_b.current() < slow_position
        await slow.__aexit__(None, None, None)
        await _until(lambda: events_b.current() == fast_position)
        assert events_a.current() == fast_position

        # A dies (no bye) with a position in flight: B notices and moves on.
        doomed = events_a.allocate()
        lost = await doomed.__aenter__()
        await asyncio.sleep(0.1)  # its bound reaches B
        a._closing = True
        for task in list(a._tasks):
            task.cancel()
        a._listener.terminate()
        db_a.pool.terminate()
        async with events_b.allocate() as after:
            pass
        assert events_b.current() < lost
        await _until(lambda: events_b.current() == after)
        assert b.solo
        await _until(lambda: b.leader)  # and takes over the background jobs
    finally:
        await b.stop()
        await db_b.close()
        if not db_a.pool._closed:
            await db_a.close()


async def test_a_write_that_announced_its_own_position_is_not_announced_again(database_dsn):
    """A write that told the others itself (the NOTIFY in its statement, services/pipeline.py)
    finishes its position here without a second announcement; one that took no position
    (a write refused) finishes nothing."""
    dbs, (a,) = await _generators(database_dsn, 1)
    try:
        a.add_peer("b", a.own_bound())
        told: list[int | None] = []
        a.announcer = lambda _stream, position, _bound: told.append(position)

        async def write_taking_a_position():
            return await dbs[0].fetchval(f"SELECT nextval('{SEQUENCES['events']}')"), "written"

        async with a.allocate(fetch=write_taking_a_position, announced=True) as position:
            pass
        assert told == [] and a.current() == position

        async def refused_write():
            return None, "refused"

        allocation = a.allocate(fetch=refused_write, announced=True)
        async with allocation as nothing:
            assert nothing is None and allocation.extra == "refused"
        assert told == [] and a.current() == position

        later = a.allocate()
        async with later as second:
            later.announced_by_write()
        assert told == [] and a.current() == second
        async with a.allocate() as third:
            pass
        assert told == [third]
    finally:
        for db in dbs:
            await db.close()
