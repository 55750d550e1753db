"""The outbound transaction queue against a real receiving server on 127.0.0.1 and real PostgreSQL.

The receiver plays a peer's PUT /_matrix/federation/v1/send/{txnId}: it records
transactions, deduplicates by txn id as a real server does, notices two
requests in flight at once, and can answer errors or be down.
Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp import web

from federation.sender import FederationSender
from homeserver.protocol.room_versions import DEFAULT_ROOM_VERSION
from homeserver.services.pipeline import EventDraft
from homeserver.services.room_creation import CreateRoomRequest
from homeserver.storage.federation_queue import FederationQueueStore

DEST = "remote.test"


class FederationError(Exception):
    """The shape of federation.client.FederationError: the peer answered an HTTP error."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        self.body = body


class FederationUnreachable(Exception):
    """The shape of federation.client.FederationUnreachable."""


class PlainClient:
    """put_json over plain HTTP to fixed addresses (no discovery, TLS or X-Matrix: not what is tested)."""

    def __init__(self, addresses: dict[str, str]):
        self.addresses = addresses
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def put_json(self, destination: str, path: str, body: Any) -> Any:
        try:
            async with self.session.put(self.addresses[destination] + path, json=body) as resp:
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise FederationUnreachable(str(e)) from e
        if resp.status != 200:
            raise FederationError(resp.status, answer)
        return answer

    async def close(self) -> None:
        await self.session.close()


class Receiver:
    def __init__(self) -> None:
        self.transactions: list[tuple[str, dict]] = []  # accepted, first time each id
        self.attempts: list[str] = []  # every request's txn id
        self.in_flight = 0
        self.overlapped = False
        self.fail_next = 0
        self.fail_status = 500
        self.fail_body: dict = {"errcode": "M_UNKNOWN", "error": "down for maintenance"}
        self.pdu_answer: Callable[[dict], dict] = lambda body: {}
        self.port = _free_port()
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pdus(self) -> list[dict]:
        return [pdu for _, body in self.transactions for pdu in body["pdus"]]

    @property
    def edus(self) -> list[dict]:
        return [edu for _, body in self.transactions for edu in body["edus"]]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/_matrix/federation/v1/send/{txnId}", self._send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _send(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        try:
            if self.in_flight > 1:
                self.overlapped = True
            body = await request.json()
            # Give a second request to the same destination the chance to overlap.
            await asyncio.sleep(0.002)
            txn_id = request.match_info["txnId"]
            self.attempts.append(txn_id)
            if self.fail_next > 0:
                self.fail_next -= 1
                return web.json_response(self.fail_body, status=self.fail_status)
            assert body["origin"] == "test.local"
            assert isinstance(body["origin_server_ts"], int)
            if txn_id not in {t for t, _ in self.transactions}:
                self.transactions.append((txn_id, body))
            return web.json_response({"pdus": self.pdu_answer(body)})
        finally:
            self.in_flight -= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def eventually(predicate: Callable[[], Any], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await _maybe_await(predicate()):
            await asyncio.sleep(0.01)


async def _maybe_await(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def make_sender(services):
    made: list[tuple[FederationSender, PlainClient]] = []

    def make(addresses: dict[str, str], **backoff: float) -> FederationSender:
        client = PlainClient(addresses)
        backoff.setdefault("initial_backoff_seconds", 0.02)
        backoff.setdefault("max_backoff_seconds", 0.1)
        sender = FederationSender(
            services.server_name, services.db, FederationQueueStore(services.db), services.events, client,
            **backoff,
        )
        made.append((sender, client))
        return sender

    yield make
    for sender, client in made:
        await sender.stop()
        await client.close()


async def room_messages(services, count: int) -> tuple[str, str, list]:
    """(user, room, events): a real room with ``count`` messages."""
    user = await services.accounts.create_account("alice", None)
    room_id, _ = await services.room_creator.create(
        user, CreateRoomRequest(version=DEFAULT_ROOM_VERSION, preset="public_chat", is_public=False)
    )
    events = []
    for i in range(count):
        draft = EventDraft("m.room.message", user, {"msgtype": "m.text", "body": f"message {i}"})
        events.append(await services.pipeline.send(room_id, draft))
    return user, room_id, events


async def stored_json(services, events) -> list[dict]:
    rows = await services.db.fetch(
        "SELECT event_id, json FROM events WHERE event_id = ANY($1::text[])", [e.event_id for e in events]
    )
    by_id = {r["event_id"]: json.loads(r["json"]) for r in rows}
    return [by_id[e.event_id] for e in events]


def bodies(pdus: list[dict]) -> list[str]:
    return [pdu["content"]["body"] for pdu in pdus]


async def queue_is_empty(services) -> bool:
    return await FederationQueueStore(services.db).queued_counts(DEST) == (0, 0)


async def destination_row(services) -> dict:
    return dict(await services.db.fetchrow("SELECT * FROM federation_destinations WHERE destination = $1", DEST))


async def test_delivers_everything_in_order_in_spec_sized_transactions(services, receiver, make_sender):
    user, room_id, events = await room_messages(services, 120)
    sender = make_sender({DEST: receiver.address})
    # Queued before start, so that the transactions come out full.
    await sender.send_edu([DEST], "m.typing", {"room_id": room_id, "user_id": user, "typing": True})
    for event in events:
        await sender.send_pdu(event, [DEST, services.server_name])
    for i in range(150):
        await sender.send_edu([DEST], "org.example.test", {"n": i})
    # Makes the queued typing EDU redundant: only this one is sent, in its place.
    await sender.send_edu([DEST], "m.typing", {"room_id": room_id, "user_id": user, "typing": False})

    await sender.start()
    await eventually(lambda: len(receiver.pdus) == 120 and len(receiver.edus) == 151)
    await eventually(lambda: queue_is_empty(services))

    assert receiver.pdus == await stored_json(services, events)
    assert receiver.edus[0] == {"edu_type": "m.typing",
                                "content": {"room_id": room_id, "user_id": user, "typing": False}}
    assert [edu["content"]["n"] for edu in receiver.edus[1:]] == list(range(150))
    assert all(len(body["pdus"]) <= 50 and len(body["edus"]) <= 100 for _, body in receiver.transactions)
    assert [len(body["pdus"]) for _, body in receiver.transactions] == [50, 50, 20]
    txn_ids = [txn_id for txn_id, _ in receiver.transactions]
    assert len(set(txn_ids)) == len(txn_ids) == len(receiver.attempts)
    assert [int(t) for t in txn_ids] == sorted(int(t) for t in txn_ids)
    # Our own server is never a destination.
    assert await services.db.fetchval("SELECT count(*) FROM federation_destinations") == 1

    # While the loop runs: sends one after another arrive in order; sends that
    # race each other all arrive, each transaction in the order of persisting;
    # and never two transactions at once.
    _, _, more = await room_messages_in(services, user, room_id, 30)
    for event in more:
        await sender.send_pdu(event, [DEST])
    await eventually(lambda: len(receiver.pdus) == 150)
    assert bodies(receiver.pdus[120:]) == [f"more {i}" for i in range(30)]
    done = len(receiver.transactions)
    _, _, racing = await room_messages_in(services, user, room_id, 30)
    await asyncio.gather(*(sender.send_pdu(event, [DEST]) for event in racing))
    await eventually(lambda: len(receiver.pdus) == 180)
    assert sorted(bodies(receiver.pdus[150:])) == sorted(f"more {i}" for i in range(30))
    for _, body in receiver.transactions[done:]:
        numbers = [int(b.split()[1]) for b in bodies(body["pdus"])]
        assert numbers == sorted(numbers)
    assert not receiver.overlapped


async def room_messages_in(services, user: str, room_id: str, count: int) -> tuple[str, str, list]:
    events = []
    for i in range(count):
        draft = EventDraft("m.room.message", user, {"msgtype": "m.text", "body": f"more {i}"})
        events.append(await services.pipeline.send(room_id, draft))
    return user, room_id, events


async def test_destination_that_fails_then_is_down_gets_everything_when_back(services, receiver, make_sender):
    user, room_id, events = await room_messages(services, 60)
    sender = make_sender({DEST: receiver.address})
    receiver.fail_next = 3
    for event in events:
        await sender.send_pdu(event, [DEST])
    await sender.start()
    await eventually(lambda: len(receiver.pdus) == 60)
    assert bodies(receiver.pdus) == [f"message {i}" for i in range(60)]
    # The failed transaction was retried under its own id until it was answered 200.
    first_txn = receiver.transactions[0][0]
    assert receiver.attempts[:4] == [first_txn] * 4
    await eventually(lambda: queue_is_empty(services))
    assert (await destination_row(services))["failures"] == 0

    # Now the destination is down altogether (connections refused).
    await receiver.stop()
    _, _, more = await room_messages_in(services, user, room_id, 10)
    for event in more:
        await sender.send_pdu(event, [DEST])
    await sender.send_edu([DEST], "org.example.test", {"while": "down"})

    async def backing_off() -> bool:
        return (await destination_row(services))["failures"] >= 2

    await eventually(backing_off)
    attempts_while_down = len(receiver.attempts)
    await receiver.start()
    await eventually(lambda: len(receiver.pdus) == 70)
    assert bodies(receiver.pdus[60:]) == [f"more {i}" for i in range(10)]
    assert receiver.edus == [{"edu_type": "org.example.test", "content": {"while": "down"}}]
    assert len(receiver.attempts) > attempts_while_down
    await eventually(lambda: queue_is_empty(services))
    assert not receiver.overlapped


async def test_backoff_survives_new_sends_and_a_restart(services, receiver, make_sender):
    _, _, events = await room_messages(services, 2)
    receiver.fail_next = 1000
    slow = {"initial_backoff_seconds": 3600, "max_backoff_seconds": 3600}
    sender = make_sender({DEST: receiver.address}, **slow)
    await sender.start()
    await sender.send_pdu(events[0], [DEST])

    async def failed_once() -> bool:
        return (await destination_row(services))["failures"] == 1

    await eventually(failed_once)
    backoff = await destination_row(services)
    assert backoff["retry_after_ts"] > backoff["last_txn_id"] + 3000 * 1000

    # A new event is stored, but does not cut the backoff short.
    await sender.send_pdu(events[1], [DEST])
    assert await FederationQueueStore(services.db).queued_counts(DEST) == (2, 0)
    await asyncio.sleep(0.1)
    assert (await destination_row(services))["retry_after_ts"] == backoff["retry_after_ts"]
    assert len(receiver.attempts) == 1

    # After a restart the backoff still holds.
    await sender.stop()
    restarted = make_sender({DEST: receiver.address}, **slow)
    await restarted.start()
    await asyncio.sleep(0.1)
    assert len(receiver.attempts) == 1

    # Hearing from the destination ends the backoff: the pending transaction goes
    # out again under its id, then the rest.
    receiver.fail_next = 0
    await restarted.notify_destination_up(DEST)
    await eventually(lambda: len(receiver.pdus) == 2)
    assert [txn_id for txn_id, _ in receiver.transactions][0] == receiver.attempts[0]
    assert [bodies(body["pdus"]) for _, body in receiver.transactions] == [["message 0"], ["message 1"]]
    await eventually(lambda: queue_is_empty(services))
    row = await destination_row(services)
    assert (row["failures"], row["retry_after_ts"], row["pending_txn_id"]) == (0, 0, None)


async def test_queue_written_before_a_restart_is_delivered_by_the_next_sender(services, make_sender):
    _, _, events = await room_messages(services, 30)
    down = Receiver()  # never started: its port refuses connections
    sender = make_sender({DEST: down.address})
    await sender.start()
    for event in events:
        await sender.send_pdu(event, [DEST])
    await sender.send_edu([DEST], "org.example.test", {"before": "restart"})

    async def failed() -> bool:
        return (await destination_row(services))["failures"] >= 1

    await eventually(failed)
    await sender.stop()
    assert await FederationQueueStore(services.db).queued_counts(DEST) == (30, 1)

    receiver = Receiver()
    await receiver.start()
    try:
        restarted = make_sender({DEST: receiver.address})
        await restarted.start()
        await eventually(lambda: len(receiver.pdus) == 30)
        assert receiver.pdus == await stored_json(services, events)
        assert receiver.edus == [{"edu_type": "org.example.test", "content": {"before": "restart"}}]
        await eventually(lambda: queue_is_empty(services))
    finally:
        await receiver.stop()


@pytest.mark.parametrize(("status", "body", "delivered"), [
    # Refused as such: that transaction's contents are dropped, the queue goes on.
    (400, {"errcode": "M_BAD_JSON", "error": "no"}, 10),
    (403, {"errcode": "M_FORBIDDEN", "error": "no"}, 10),
    # Not the transaction's fault: retried.
    (401, {"errcode": "M_UNAUTHORIZED", "error": "unknown key"}, 60),
    (429, {"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 10}, 60),
])
async def test_client_errors(services, receiver, make_sender, status, body, delivered):
    _, _, events = await room_messages(services, 60)
    sender = make_sender({DEST: receiver.address})
    receiver.fail_next, receiver.fail_status, receiver.fail_body = 1, status, body
    for event in events:
        await sender.send_pdu(event, [DEST])
    await sender.start()
    await eventually(lambda: queue_is_empty(services))
    assert bodies(receiver.pdus) == [f"message {i}" for i in range(60 - delivered, 60)]
    assert (await destination_row(services))["failures"] == 0


async def test_vanished_events_are_skipped_and_pdu_errors_not_retried(services, receiver, make_sender):
    _, _, events = await room_messages(services, 1)
    await FederationQueueStore(services.db).enqueue_pdu([DEST], "$vanished", 0)
    sender = make_sender({DEST: receiver.address})
    await sender.send_pdu(events[0], [DEST])
    await sender.send_pdu(events[0], [DEST])  # queued once
    receiver.pdu_answer = lambda body: {events[0].event_id: {"error": "not today"}}
    await sender.start()
    await eventually(lambda: queue_is_empty(services))
    assert receiver.pdus == await stored_json(services, events)
    assert len(receiver.attempts) == 1

    # Only vanished events: nothing is sent, and the rows go.
    await FederationQueueStore(services.db).enqueue_pdu([DEST], "$also-vanished", 0)
    await sender.send_edu([], "org.example.test", {})  # no destinations: nothing to do
    await sender.stop()
    await sender.start()
    await eventually(lambda: queue_is_empty(services))
    assert len(receiver.attempts) == 1
