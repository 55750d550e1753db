"""Background jobs on one process of several (services/cluster.py): the leader's federation
sender sends what another process queued, and a new leader takes over when it dies."""

from __future__ import annotations

import asyncio

from federation.sender import FederationSender
from homeserver.services.cluster import Cluster, application_name_for
from homeserver.storage.db import Database
from homeserver.storage.events import EventStore
from homeserver.storage.federation_queue import FederationQueueStore
from homeserver.storage.stream_positions import SEQUENCES
from homeserver.storage.streams import StreamIdGenerator
from tests.federation.test_sender import DEST, PlainClient, Receiver, eventually


async def _process(dsn: str, instance: str, receiver: Receiver):
    db = await Database.connect(dsn, max_size=4, application_name=application_name_for(instance))
    streams = {name: await StreamIdGenerator.from_sequence(db, name, seq) for name, seq in SEQUENCES.items()}
    cluster = Cluster(db, instance, streams)
    await cluster.start()
    client = PlainClient({DEST: receiver.address})
    sender = FederationSender("test.local", db, FederationQueueStore(db), EventStore(db), client,
                              initial_backoff_seconds=0.02, max_backoff_seconds=0.1)
    # As federation/app.py wires it.
    sender.wake_elsewhere = lambda destination: cluster.send(["fed", [destination]])

    def on_fed(_sender: str, item: list) -> None:
        if cluster.leader:
            for destination in item[1]:
                sender.wake(destination)

    cluster.handlers["fed"] = on_fed
    await cluster.run_on_leader(sender.start, sender.stop)
    return db, cluster, sender, client


async def test_the_leader_sends_what_another_process_queued_and_a_new_leader_takes_over(database_dsn):
    receiver = Receiver()
    await receiver.start()
    db_a, a, sender_a, client_a = await _process(database_dsn, "lead-a", receiver)
    db_b, b, sender_b, client_b = await _process(database_dsn, "lead-b", receiver)
    try:
        assert a.leader and not b.leader
        await sender_b.send_edu([DEST], "org.example.ping", {"n": 1})
        await eventually(lambda: [e["content"] for e in receiver.edus] == [{"n": 1}])

        # The leader is killed: its lock goes with its connection, and B sends from now on.
        a._closing = True
        for task in list(a._tasks):
            task.cancel()
        await sender_a.stop()
        a._listener.terminate()
        db_a.pool.terminate()
        await eventually(lambda: b.leader)
        await sender_b.send_edu([DEST], "org.example.ping", {"n": 2})
        await eventually(lambda: [e["content"] for e in receiver.edus] == [{"n": 1}, {"n": 2}])
    finally:
        await b.end_job(sender_b.start, sender_b.stop)
        await b.stop()
        await client_a.close()
        await client_b.close()
        await db_b.close()
        await receiver.stop()
        await asyncio.sleep(0)
