"""Events written on a room's tip by two processes sharing one database, without a lock
between statements (services/pipeline.py, EventStore.insert_on_tip): messages written at
once on both make forks, which the next event joins, and never wait for the room's lock;
a message built before a state change on the other process is built again on the new
state; a state event under the room's advisory lock follows every event before it and is
followed by every event after it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg
import pytest

from homeserver.server import open_services
from homeserver.services.room_writer import room_lock_key
from homeserver.storage.events import EventStore, RoomTip
from tests.conftest import make_config
from tests.helpers import Api, User, served


@contextlib.asynccontextmanager
async def _process(directory: Path, dsn: str):
    async with open_services(make_config(directory, dsn)) as services, served(services) as api:
        yield api


@contextlib.asynccontextmanager
async def _two_processes(tmp_path: Path, dsn: str):
    async with _process(tmp_path / "a", dsn) as a, _process(tmp_path / "b", dsn) as b:
        for _ in range(200):  # each has heard the other: neither writes as if alone
            if not a.services.cluster.solo and not b.services.cluster.solo:
                break
            await asyncio.sleep(0.02)
        assert not a.services.cluster.solo and not b.services.cluster.solo
        yield a, b


async def _shared_room(a: Api, b: Api, **room: object) -> tuple[User, User, str]:
    """alice on process A, bob on process B, both joined to a public room alice made."""
    alice = await a.register("alice")
    bob = await b.register("bob")
    room_id = await alice.create_room(preset="public_chat", **room)
    await bob.join(room_id)
    return alice, bob, room_id


async def _messages_in(dsn: str, room_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM events WHERE room_id = $1 AND type = 'm.room.message'", room_id)
    finally:
        await conn.close()


async def _room_graph(dsn: str, room_id: str) -> tuple[list[str], dict[str, list[str]]]:
    """The room's forward extremities, and each live event's prev events."""
    tip, prevs, _ = await _room_graph_in_order(dsn, room_id)
    return tip, prevs


async def _room_graph_in_order(dsn: str, room_id: str) -> tuple[list[str], dict[str, list[str]], list[tuple[str, bool]]]:
    """As _room_graph, and the live events in stream order, each with whether it is state."""
    conn = await asyncpg.connect(dsn)
    try:
        tip = [r["event_id"] for r in await conn.fetch(
            "SELECT event_id FROM forward_extremities WHERE room_id = $1", room_id)]
        prevs: dict[str, list[str]] = {}
        order: list[tuple[str, bool]] = []
        for row in await conn.fetch(
                "SELECT e.event_id, e.state_key IS NOT NULL AS is_state,"
                " array_remove(array_agg(g.prev_event_id), NULL) AS prevs FROM events e"
                " LEFT JOIN event_edges g ON g.event_id = e.event_id"
                " WHERE e.room_id = $1 AND NOT e.outlier GROUP BY e.event_id ORDER BY min(e.stream_ordering)",
                room_id):
            prevs[row["event_id"]] = list(row["prevs"])
            order.append((row["event_id"], row["is_state"]))
    finally:
        await conn.close()
    return tip, prevs, order


def _ancestors(prevs: dict[str, list[str]], event_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(prevs[event_id])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(prevs[current])
    return seen


def _assert_sound_graph(tip: list[str], prevs: dict[str, list[str]]) -> None:
    """The tip is exactly the events no event cites, and every event is reached from it."""
    cited = {p for ps in prevs.values() for p in ps}
    assert cited <= set(prevs), cited - set(prevs)
    assert sorted(tip) == sorted(set(prevs) - cited)
    reached = set(tip).union(*(_ancestors(prevs, e) for e in tip))
    assert reached == set(prevs)


def _cached_ids(api: Api, room_id: str) -> list[str]:
    cached = api.services.pipeline._extremities.get(room_id)
    return [e.event_id for e in cached.entries] if cached is not None else []


async def _heard(api: Api, room_id: str, event_id: str) -> None:
    """Wait until the process has been told of the event: its cached tip shows it (the
    notification updates the tip it had cached, it does not drop it)."""
    for _ in range(250):
        if event_id in _cached_ids(api, room_id):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never told of {event_id}")


async def _knows_the_tip(api: Api, dsn: str, room_id: str) -> None:
    """Wait until the process's cached tip is the room's tip in the database."""
    for _ in range(250):
        tip, _ = await _room_graph(dsn, room_id)
        if sorted(_cached_ids(api, room_id)) == sorted(tip):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"cached {_cached_ids(api, room_id)}, stored {tip}")


def _assert_one_chain(tip: list[str], prevs: dict[str, list[str]]) -> None:
    assert len(tip) == 1, tip
    # Walking back from the tip through single prev events reaches every event once.
    seen, event_id = [], tip[0]
    while True:
        seen.append(event_id)
        assert len(prevs[event_id]) <= 1, (event_id, prevs[event_id])
        if not prevs[event_id]:
            break
        event_id = prevs[event_id][0]
    assert sorted(seen) == sorted(prevs)


async def test_concurrent_messages_from_two_processes_fork_without_the_lock_and_join_again(
        tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice, bob, room = await _shared_room(a, b)
        await alice.send_text(room, "warm")
        await _knows_the_tip(b, database_dsn, room)

        async def send_many(user, label):
            return [await user.send_text(room, f"{label} {n}") for n in range(25)]

        with _statements_of(a) as sent_a, _statements_of(b) as sent_b:
            sent = await asyncio.gather(send_many(alice, "a1"), send_many(alice, "a2"),
                                        send_many(bob, "b1"), send_many(bob, "b2"))
        # Not one message went the locked way: each was one statement, on the tip as cached.
        locked = [q for q in sent_a + sent_b if "pg_advisory_xact_lock(" in q]
        assert not locked, locked
        tip, prevs = await _room_graph(database_dsn, room)
        _assert_sound_graph(tip, prevs)
        assert {e for batch in sent for e in batch} <= set(prevs)
        # Once told of the other's events, the next message of either process joins every fork.
        await _knows_the_tip(a, database_dsn, room)
        joined = await alice.send_text(room, "joins them")
        event = await a.services.events.get_event(joined)
        assert sorted(event.prev_event_ids) == sorted(tip)
        assert (await _room_graph(database_dsn, room))[0] == [joined]


async def test_a_send_on_a_tip_moved_elsewhere_forks_and_the_next_send_joins(tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice, bob, room = await _shared_room(a, b)
        await bob.send_text(room, "b sees the tip")
        stale = await b.services.pipeline.cached_tip(room)
        moved = await alice.send_text(room, "a moves it")
        await _heard(b, room, moved)
        # Process B still believes its old tip (as before A's notification arrives), and hears
        # of A's event while its own write is on its way.
        b.services.pipeline._extremities.set(room, stale)
        event_id = await bob.send_text(room, "on the old tip")
        event = await b.services.events.get_event(event_id)
        assert event.prev_event_ids == [e.event_id for e in stale.entries]
        tip, prevs = await _room_graph(database_dsn, room)
        assert sorted(tip) == sorted([moved, event_id])
        _assert_sound_graph(tip, prevs)
        await _knows_the_tip(a, database_dsn, room)
        joined = await alice.send_text(room, "joins the fork")
        assert sorted((await a.services.events.get_event(joined)).prev_event_ids) == sorted(tip)
        tip, prevs = await _room_graph(database_dsn, room)
        assert tip == [joined]
        _assert_sound_graph(tip, prevs)


async def test_a_message_built_before_a_ban_on_the_other_process_is_refused(tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice, bob, room = await _shared_room(a, b)
        await bob.send_text(room, "before")
        stale = await b.services.pipeline.cached_tip(room)
        r = await alice.post(f"/_matrix/client/v3/rooms/{room}/ban", {"user_id": bob.user_id})
        assert r.status == 200, r
        [ban] = (await _room_graph(database_dsn, room))[0]
        await _heard(b, room, ban)
        # B's tip as cached before the ban (its notification on the way): the write finds the
        # room's state moved, and the message, built again on the room as it is, is refused.
        b.services.pipeline._extremities.set(room, stale)
        r = await bob.put(f"/_matrix/client/v3/rooms/{room}/send/m.room.message/after",
                          {"msgtype": "m.text", "body": "after the ban"})
        assert r.status == 403, r
        assert await _messages_in(database_dsn, room) == 1
        assert (await _room_graph(database_dsn, room))[0] == [ban]


async def _topic_set_elsewhere(a: Api, b: Api) -> tuple[User, str, object, str]:
    """bob on B sends, B's tip is kept as it was (stale), then alice on A sets the topic and
    B hears of it: (bob, room, the stale tip, the topic event)."""
    alice, bob, room = await _shared_room(a, b)
    await bob.send_text(room, "before")
    stale = await b.services.pipeline.cached_tip(room)
    r = await alice.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.topic", {"topic": "new"})
    assert r.status == 200, r
    await _heard(b, room, r["event_id"])
    return bob, room, stale, r["event_id"]


async def test_a_retried_txn_on_a_stale_tip_answers_the_first_event(tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (_a, b):
        bob = await b.register("bob")
        room = await bob.create_room(preset="public_chat")
        stale = await b.services.pipeline.cached_tip(room)
        first = await bob.send_text(room, "once", txn_id="same")
        b.services.pipeline._extremities.set(room, stale)
        assert await bob.send_text(room, "once", txn_id="same") == first
        assert await _messages_in(database_dsn, room) == 1
        tip, prevs = await _room_graph(database_dsn, room)
        assert tip == [first]
        _assert_one_chain(tip, prevs)


@pytest.mark.parametrize("cached", ["the old tip", "the old tip beside the topic"])
async def test_a_message_built_before_a_state_change_elsewhere_is_built_again_after_it(
        tmp_path, database_dsn, cached):
    """B's tip as cached before the topic (its notification on the way), or the old tip
    beside the topic as of the epoch before it: two states to resolve, in a transaction,
    where the epoch is compared as well."""
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        bob, room, stale, topic = await _topic_set_elsewhere(a, b)
        if cached == "the old tip":
            b.services.pipeline._extremities.set(room, stale)
        else:
            [topic_entry] = [e for e in b.services.pipeline._extremities.get(room).entries if e.event_id == topic]
            b.services.pipeline._extremities.set(room, RoomTip(stale.entries + (topic_entry,), stale.state_epoch))
        event_id = await bob.send_text(room, "after the topic")
        assert (await b.services.events.get_event(event_id)).prev_event_ids == [topic]
        tip, prevs = await _room_graph(database_dsn, room)
        assert tip == [event_id]
        _assert_sound_graph(tip, prevs)


async def test_a_message_waiting_on_a_state_write_sees_its_epoch_once_it_commits(tmp_path, database_dsn):
    """The write's statement takes its snapshot before it waits for the room's lock: the
    epoch is read from the room's row as locked (as committed since), not from the snapshot."""
    async with _two_processes(tmp_path, database_dsn) as (_a, b):
        bob = await b.register("bob")
        room = await bob.create_room(preset="public_chat")
        await bob.send_text(room, "warm")
        writer = await asyncpg.connect(database_dsn)
        try:
            # A state write of another process, between its lock and its commit.
            tr = writer.transaction()
            await tr.start()
            await writer.execute("SELECT pg_advisory_xact_lock($1)", room_lock_key(room))
            await writer.execute("UPDATE rooms SET state_epoch = state_epoch + 1 WHERE room_id = $1", room)
            with _statements_of(b) as sent:
                send = asyncio.ensure_future(bob.send_text(room, "waits"))
                for _ in range(250):
                    if await writer.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                             " AND NOT granted"):
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("the send never waited for the room's lock")
                await tr.commit()
                event_id = await send
        finally:
            await writer.close()
        # Refused once (the epoch moved), then written under the room's lock.
        assert any("pg_advisory_xact_lock(" in q for q in sent), sent
        assert (await _room_graph(database_dsn, room))[0] == [event_id]


async def test_state_events_and_messages_from_two_processes_all_land(tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice, bob, room = await _shared_room(a, b, power_level_content_override={"users_default": 100})

        async def topics(user, label):
            for n in range(10):
                r = await user.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.topic", {"topic": f"{label} {n}"})
                assert r.status == 200, r

        async def messages(user, label):
            for n in range(20):
                await user.send_text(room, f"{label} {n}")

        await asyncio.gather(topics(alice, "a"), messages(bob, "b"), topics(bob, "b"), messages(alice, "a"))
        tip, prevs, order = await _room_graph_in_order(database_dsn, room)
        _assert_sound_graph(tip, prevs)
        # A state event follows every event written before it, and every event written after
        # it follows it: messages fork only among themselves, never across a state change.
        for index, (event_id, is_state) in enumerate(order):
            if is_state:
                assert {e for e, _ in order[:index]} <= _ancestors(prevs, event_id), event_id
                for later, _ in order[index + 1:]:
                    assert event_id in _ancestors(prevs, later), (event_id, later)
        # The current topic is the one written last in the chain.
        r = await alice.get(f"/_matrix/client/v3/rooms/{room}/state/m.room.topic")
        conn = await asyncpg.connect(database_dsn)
        try:
            last_topic = await conn.fetchval(
                "SELECT json FROM events WHERE room_id = $1 AND type = 'm.room.topic'"
                " ORDER BY stream_ordering DESC LIMIT 1", room)
        finally:
            await conn.close()
        assert r.status == 200 and f'"topic":"{r["topic"]}"' in last_topic


# What a process does in the background on its own schedule (services/cluster.py's
# liveness check and leadership, presence's sweep): not the work of the request counted.
_BACKGROUND = ("pg_stat_activity", "pg_try_advisory_lock", "FROM presence", "INTO presence")


@contextlib.contextmanager
def _statements_of(api: Api):
    """The SQL sent by the process's own connections (told apart by their application_name),
    but its background jobs'."""
    name = "homeserver:" + api.services.cluster.instance_id
    sent: list[str] = []
    original, original_simple = asyncpg.connection.Connection._execute, asyncpg.connection.Connection.execute

    def note(conn, query):
        if conn.get_settings().application_name == name and not any(b in query for b in _BACKGROUND):
            sent.append(query)

    async def counting(self, query, *args, **kwargs):
        note(self, query)
        return await original(self, query, *args, **kwargs)

    async def counting_simple(self, query, *args, **kwargs):
        if not args:  # the simple protocol
            note(self, query)
        return await original_simple(self, query, *args, **kwargs)

    asyncpg.connection.Connection._execute = counting
    asyncpg.connection.Connection.execute = counting_simple
    try:
        yield sent
    finally:
        asyncpg.connection.Connection._execute = original
        asyncpg.connection.Connection.execute = original_simple


async def test_a_message_costs_one_statement_even_after_the_other_process_wrote(
        tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice, bob, room = await _shared_room(a, b)
        await alice.send_text(room, "warm")
        for label in ("after our own", "after the other's"):
            if label == "after the other's":
                theirs = await bob.send_text(room, "from b")
                await _heard(a, room, theirs)
            await asyncio.sleep(0.1)  # the last notification is out
            with _statements_of(a) as sent:
                await alice.send_text(room, label)
                await asyncio.sleep(0.1)
            # One statement: the write, which also notifies the other process as it commits.
            assert len(sent) == 1, (label, sent)
            assert "FOR SHARE" in sent[0] and "pg_notify" in sent[0], (label, sent)
        tip, prevs = await _room_graph(database_dsn, room)
        _assert_one_chain(tip, prevs)


async def test_a_state_event_with_another_process_running_notifies_it_in_its_transaction(tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice, bob, room = await _shared_room(a, b)
        since = (await bob.sync())["next_batch"]
        await asyncio.sleep(0.1)
        with _statements_of(a) as sent:
            r = await alice.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.topic", {"topic": "news"})
            assert r.status == 200, r
            await asyncio.sleep(0.1)
        assert any("pg_advisory_xact_lock" in q for q in sent), sent
        writes = [q for q in sent if "FOR SHARE" in q]
        assert len(writes) == 1 and "pg_notify" in writes[0], sent
        assert not [q for q in sent if q.lstrip().startswith("SELECT pg_notify")], sent
        # Process B heard of it: a long poll there returns the topic.
        timeline = (await bob.sync(since=since, timeout=5000))["rooms"]["join"][room]["timeline"]["events"]
        assert [e["content"].get("topic") for e in timeline if e["type"] == "m.room.topic"] == ["news"]


async def test_one_txn_id_sent_to_both_processes_at_once_is_one_event(tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice = await a.register("alice")
        alice_on_b = User(b, alice.user_id, alice.access_token, alice.device_id)
        room = await alice.create_room(preset="public_chat")
        for n in range(5):
            answers = await asyncio.gather(*(user.send_text(room, f"once {n}", txn_id=f"same{n}")
                                             for user in (alice, alice_on_b, alice, alice_on_b)))
            assert len(set(answers)) == 1, answers
        assert await _messages_in(database_dsn, room) == 5
        tip, prevs = await _room_graph(database_dsn, room)
        _assert_one_chain(tip, prevs)


async def test_the_other_process_keeps_the_written_event_as_a_read_would_give_it(tmp_path, database_dsn):
    async with _two_processes(tmp_path, database_dsn) as (a, b):
        alice, bob, room = await _shared_room(a, b, power_level_content_override={"users_default": 100})
        since = (await bob.sync())["next_batch"]
        message = await alice.send_text(room, "told with its body", txn_id="t-body")
        r = await alice.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.topic", {"topic": "told too"})
        assert r.status == 200, r
        topic = r["event_id"]
        await _heard(b, room, topic)
        fresh = await EventStore(b.services.db).get_events([message, topic])
        for event_id in (message, topic):
            kept = b.services.events._cache.get(event_id)
            assert kept is not None, event_id
            assert kept.json == fresh[event_id].json and kept.internal == fresh[event_id].internal, event_id
        # So the long poll it wakes on B reads no event back.
        with _statements_of(b) as sent:
            woken = asyncio.ensure_future(bob.sync(since=since, timeout=5000))
            timeline = (await woken)["rooms"]["join"][room]["timeline"]["events"]
        assert [e["event_id"] for e in timeline][-2:] == [message, topic]
        assert not [q for q in sent if "SELECT e.event_id, e.json" in q], sent


async def test_a_tip_read_while_another_process_wrote_in_the_room_is_not_kept(tmp_path, database_dsn):
    async with _process(tmp_path / "a", database_dsn) as a:
        alice = await a.register("alice")
        room = await alice.create_room(preset="public_chat")
        pipeline = a.services.pipeline
        pipeline._extremities.pop(room)
        read = pipeline.events.tip_with_facts

        async def read_while_told(room_id, conn=None):
            tip = await read(room_id, conn)
            # News of a write of the room arrives while the read is on its way back.
            pipeline.room_written_elsewhere(room_id, membership=False)
            return tip

        pipeline.events.tip_with_facts = read_while_told
        try:
            first = await pipeline.cached_tip(room)
        finally:
            pipeline.events.tip_with_facts = read
        assert first.entries  # answered, but not kept: it may be from before that write
        assert pipeline._extremities.get(room) is None
        assert await pipeline.cached_tip(room) == first
        assert pipeline._extremities.get(room) == first
