"""Outbound federation: durable per-destination queues of PDUs and EDUs, sent as transactions.

Everything is queued in PostgreSQL first (homeserver/storage/federation_queue.py),
then one asyncio task per destination with work sends it, one transaction at a
time, oldest first, at most 50 PDUs and 100 EDUs each. The task ends when the
destination's queue is empty; `send_pdu`/`send_edu` start it again. A failed
transaction is retried with the same id and contents after an exponential
backoff that is persisted, so a restart neither forgets the queue nor the backoff.
Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions

One process sends for a database: with several processes, the cluster's
leader (services/cluster.py, docs/scaling.md); the others queue and tell it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Iterable

from homeserver.protocol.canonical import canonical_json_str
from homeserver.protocol.events import Event
from homeserver.services.clock import now_ms
from homeserver.storage.db import Database
from homeserver.storage.events import EventStore
from homeserver.storage.federation_queue import DestinationState, FederationQueueStore, QueuedTransaction

log = logging.getLogger(__name__)

# The spec's limits on one transaction.
MAX_PDUS_PER_TRANSACTION = 50
MAX_EDUS_PER_TRANSACTION = 100

# The first retry after 5 s, doubling up to half an hour: a peer that blinks is
# soon caught up, and one that is gone for days costs a request per destination
# every 30 minutes.
INITIAL_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30 * 60.0

# Transactions in flight at once over all destinations: a room with thousands
# of servers must not open thousands of connections on a small VPS.
MAX_CONCURRENT_TRANSACTIONS = 50

# 4xx answers that say nothing against the transaction itself, so it is retried:
# 401 (the peer could not check our signature yet, e.g. it failed to fetch our
# keys), 408 (timeout) and 429 (rate limited).
_RETRIED_CLIENT_ERRORS = frozenset({401, 408, 429})


class FederationSender:
    def __init__(
        self,
        server_name: str,
        db: Database,
        queue_store: FederationQueueStore,
        events: EventStore,
        client: Any,
        *,
        initial_backoff_seconds: float = INITIAL_BACKOFF_SECONDS,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
        max_concurrent_transactions: int = MAX_CONCURRENT_TRANSACTIONS,
    ):
        self.server_name = server_name
        self.db = db
        self.queue = queue_store
        self.events = events
        # federation.client.FederationClient, or anything with its put_json.
        self.client = client
        self.initial_backoff_seconds = initial_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._slots = asyncio.Semaphore(max_concurrent_transactions)
        # Transactions that failed (network or refusal), ever: homeserver/metrics.py reads it.
        self.failed_sends = 0
        self._running = False
        self._loops: dict[str, asyncio.Task[None]] = {}
        # Destinations queued for since their loop last read the queue: the loop
        # reads again instead of ending, so no wake-up is lost.
        self._dirty: set[str] = set()
        # Set to cut a loop's backoff short (notify_destination_up).
        self._woken: dict[str, asyncio.Event] = {}
        # Where queued work goes when this process does not send (set by federation/app.py).
        self.wake_elsewhere: Callable[[str], None] | None = None

    async def start(self) -> None:
        """Resume every destination with queued rows (their backoff, if any, still holds)."""
        self._running = True
        for destination in await self.queue.destinations_with_work():
            self._wake(destination)

    async def stop(self) -> None:
        """Stop the loops. A transaction cut off stays pending and is resent under its id on the next start."""
        self._running = False
        loops = list(self._loops.values())
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        self._loops.clear()
        self._dirty.clear()
        self._woken.clear()

    async def send_pdu(self, event: Event, destinations: Iterable[str]) -> None:
        """Queue an event for the destinations (our own name is left out) and wake their loops."""
        targets = self._targets(destinations)
        if not targets:
            return
        position = event.internal.get("stream_ordering")
        if position is None:
            stored = await self.events.get_event(event.event_id)
            if stored is None:
                # Only stored events can be sent (they are loaded from the events table).
                log.warning("federation: not queueing %s, which is not stored", event.event_id)
                return
            position = stored.internal["stream_ordering"]
        await self.queue.enqueue_pdu(targets, event.event_id, position)
        for destination in targets:
            self._wake(destination)

    async def send_edu(self, destinations: Iterable[str], edu_type: str, content: dict) -> None:
        """Queue an EDU for the destinations and wake their loops.

        Typing and single-user presence EDUs replace a queued one of the same
        room and user (or user) that is not yet in a transaction: only the
        newest state matters to the receiver. Content that is not canonical
        JSON (floats, out-of-range integers) raises CanonicalJsonError here,
        rather than becoming a transaction that can never be signed.
        """
        targets = self._targets(destinations)
        if not targets:
            return
        await self.queue.enqueue_edu(targets, edu_type, canonical_json_str(content), _coalesce_key(edu_type, content))
        for destination in targets:
            self._wake(destination)

    async def notify_destination_up(self, destination: str) -> None:
        """The destination was heard from (e.g. it sent us a request): end its backoff and retry now.

        The client's own (in-memory) backoff of the destination ends too, or the
        retry would be refused before it left.
        """
        client_backoff = getattr(self.client, "backoff", None)
        if callable(client_backoff):
            client_backoff().record_success(destination)
        if await self.queue.clear_backoff(destination):
            woken = self._woken.get(destination)
            if woken is not None:
                woken.set()
            self._wake(destination)

    # The per-destination loop

    def _targets(self, destinations: Iterable[str]) -> list[str]:
        return sorted({d for d in destinations if d != self.server_name})

    def wake(self, destination: str) -> None:
        """Another process queued rows for the destination (services/cluster.py)."""
        if self._running:
            self._wake(destination)

    def _wake(self, destination: str) -> None:
        if not self._running:
            # Another process sends (the cluster's leader): it reads the queue when told.
            if self.wake_elsewhere is not None:
                self.wake_elsewhere(destination)
            return
        self._dirty.add(destination)
        if destination not in self._loops:
            self._woken[destination] = asyncio.Event()
            self._loops[destination] = asyncio.create_task(
                self._run(destination), name=f"federation-sender {destination}"
            )

    async def _run(self, destination: str) -> None:
        try:
            while True:
                try:
                    # Cleared before the state is read, so a notify_destination_up
                    # after the read still cuts the wait short.
                    self._woken[destination].clear()
                    state = await self.queue.get_destination(destination)
                    await self._wait_for_backoff(destination, state)
                    self._dirty.discard(destination)
                    txn = await self.queue.claim_transaction(
                        destination, now_ms(), MAX_PDUS_PER_TRANSACTION, MAX_EDUS_PER_TRANSACTION
                    )
                    if txn is None:
                        # Nothing awaited since the check: a send_pdu cannot slip in between.
                        if destination in self._dirty:
                            continue
                        return
                    await self._transmit(destination, state, txn)
                except Exception:
                    # The database or a bug: keep the rows and try again later.
                    log.exception("federation sender loop for %s failed; retrying", destination)
                    await asyncio.sleep(self.initial_backoff_seconds)
        finally:
            if self._loops.get(destination) is asyncio.current_task():
                del self._loops[destination]
                self._woken.pop(destination, None)

    async def _wait_for_backoff(self, destination: str, state: DestinationState) -> None:
        # New rows queued during the backoff do not shorten it; only
        # notify_destination_up does.
        delay = (state.retry_after_ts - now_ms()) / 1000
        if delay <= 0:
            return
        try:
            await asyncio.wait_for(self._woken[destination].wait(), delay)
        except asyncio.TimeoutError:
            pass

    async def _transmit(self, destination: str, state: DestinationState, txn: QueuedTransaction) -> None:
        loaded = await self.events.get_events(txn.pdus)
        # The event JSON exactly as stored; events that vanished are skipped.
        pdus = [loaded[event_id].json for event_id in txn.pdus if event_id in loaded]
        edus = [{"edu_type": edu.edu_type, "content": json.loads(edu.content)} for edu in txn.edus]
        if not pdus and not edus:
            await self.queue.finish_transaction(destination, txn.txn_id, now_ms(), delivered=False)
            return
        body = {"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": pdus, "edus": edus}
        try:
            async with self._slots:
                answer = await self.client.put_json(destination, f"/_matrix/federation/v1/send/{txn.txn_id}", body)
        except Exception as exc:
            await self._failed(destination, state, txn, exc)
            return
        await self.queue.finish_transaction(destination, txn.txn_id, now_ms(), delivered=True)
        if state.failures:
            log.info("federation: %s is reachable again after %d failures", destination, state.failures)
        _log_pdu_errors(destination, txn.txn_id, answer)

    async def _failed(self, destination: str, state: DestinationState, txn: QueuedTransaction,
                      exc: Exception) -> None:
        # federation.client.FederationError carries the HTTP status; everything
        # else (FederationUnreachable: DNS, connect, TLS, timeout) is a network failure.
        status = getattr(exc, "status", None)
        if isinstance(status, int) and 400 <= status < 500 and status not in _RETRIED_CLIENT_ERRORS:
            # The peer is up and refuses this transaction as such (bad JSON, too
            # large, forbidden, no such endpoint). Sending it again would get the
            # same answer and block the destination's queue for ever, so its
            # contents are dropped, as Synapse does; the queue goes on.
            log.warning(
                "federation: %s refused transaction %s with %s (%d PDUs, %d EDUs dropped): %s",
                destination, txn.txn_id, status, len(txn.pdus), len(txn.edus), exc,
            )
            await self.queue.finish_transaction(destination, txn.txn_id, now_ms(), delivered=False)
            return
        self.failed_sends += 1  # a counter for homeserver/metrics.py
        failures = state.failures + 1
        delay = min(self.initial_backoff_seconds * 2 ** min(state.failures, 40), self.max_backoff_seconds)
        if status == 429:
            hinted = _retry_after_ms(exc)
            if hinted is not None:
                # The peer said when: no more failures counted than before.
                failures = state.failures
                delay = min(hinted / 1000, self.max_backoff_seconds)
        await self.queue.record_failure(destination, failures, now_ms() + int(delay * 1000))
        log.warning(
            "federation: transaction %s to %s failed (%s); attempt %d, retrying in %.1f s",
            txn.txn_id, destination, status if status is not None else type(exc).__name__,
            failures, delay,
        )


def _coalesce_key(edu_type: str, content: dict) -> str | None:
    if edu_type == "m.typing":
        room_id, user_id = content.get("room_id"), content.get("user_id")
        if isinstance(room_id, str) and isinstance(user_id, str):
            return canonical_json_str([edu_type, room_id, user_id])
    elif edu_type == "m.presence":
        push = content.get("push")
        if isinstance(push, list) and len(push) == 1 and isinstance(push[0], dict):
            user_id = push[0].get("user_id")
            if isinstance(user_id, str):
                return canonical_json_str([edu_type, user_id])
    return None


def _retry_after_ms(exc: Exception) -> int | None:
    body = getattr(exc, "body", None)
    value = body.get("retry_after_ms") if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _log_pdu_errors(destination: str, txn_id: int, answer: Any) -> None:
    """The receiver's per-PDU results: errors are logged, never retried (the spec's answer format)."""
    results = answer.get("pdus") if isinstance(answer, dict) else None
    if not isinstance(results, dict):
        return
    for event_id, result in results.items():
        if isinstance(result, dict) and "error" in result:
            log.info("federation: %s rejected %s in transaction %s: %s",
                     destination, event_id, txn_id, result["error"])
