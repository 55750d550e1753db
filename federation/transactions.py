"""PUT /_matrix/federation/v1/send/{txnId}: transactions from other servers.

Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions

- Idempotent by (origin, txn id): a retried transaction gets the stored answer.
- One transaction of an origin at a time, and a bounded number in all; the
  PDUs of one room in the order sent, rooms in parallel.
- Every PDU gets a result (``{}`` or ``{"error": ...}``); EDUs are handled
  after the PDUs, each by the handler of its type, and never fail the
  transaction.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from homeserver.errors import MatrixError
from homeserver.services.clock import now_ms
from homeserver.storage.received_transactions import ReceivedTransactionStore

from federation.inbound import EventReceiver

log = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
# Rooms of one transaction processed at once, and transactions (all origins) at once.
ROOM_CONCURRENCY = 5
MAX_CONCURRENT_TRANSACTIONS = 20

EduHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class TransactionHandler:
    def __init__(self, receiver: EventReceiver, store: ReceivedTransactionStore):
        self.receiver = receiver
        self.store = store
        self.edu_handlers: dict[str, EduHandler] = {}
        self._origin_locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_TRANSACTIONS)

    def on_edu(self, edu_type: str, handler: EduHandler) -> None:
        self.edu_handlers[edu_type] = handler

    async def handle(self, origin: str, txn_id: str, body: dict[str, Any]) -> dict[str, Any]:
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise MatrixError(400, "M_BAD_JSON", "pdus and edus must be lists")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise MatrixError(400, "M_BAD_JSON", f"At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")
        if body.get("origin") not in (None, origin):
            raise MatrixError(403, "M_FORBIDDEN", "The transaction's origin is not the signing server")
        lock = self._origin_locks.setdefault(origin, asyncio.Lock())
        async with lock, self._slots:
            stored = await self.store.get_response(origin, txn_id)
            if stored is not None:
                return stored
            results = await self._handle_pdus(origin, pdus)
            for edu in edus:
                await self._handle_edu(origin, edu)
            response = {"pdus": results}
            await self.store.store_response(origin, txn_id, response, now_ms())
        if not lock.locked() and len(self._origin_locks) > 10_000:
            self._origin_locks.clear()
        return response

    async def _handle_pdus(self, origin: str, pdus: list[Any]) -> dict[str, Any]:
        by_room: dict[str, list[Any]] = {}
        results: dict[str, Any] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
            by_room.setdefault(room_id if isinstance(room_id, str) else "", []).append(pdu)
        semaphore = asyncio.Semaphore(ROOM_CONCURRENCY)

        async def one_room(room_pdus: list[Any]) -> None:
            async with semaphore:
                for pdu in room_pdus:
                    event_id = await self.receiver.event_id_of(pdu)
                    try:
                        error = await self.receiver.receive_pdu(origin, pdu)
                    except Exception:
                        log.exception("PDU %s from %s failed", event_id, origin)
                        error = "internal error"
                    if error:
                        log.warning("PDU %s from %s not accepted: %s", event_id, origin, error)
                    if event_id is not None:
                        results[event_id] = {"error": error} if error else {}

        await asyncio.gather(*(one_room(p) for p in by_room.values()))
        return results

    async def _handle_edu(self, origin: str, edu: Any) -> None:
        if not isinstance(edu, dict) or not isinstance(edu.get("edu_type"), str):
            return
        content = edu.get("content")
        handler = self.edu_handlers.get(edu["edu_type"])
        if handler is None or not isinstance(content, dict):
            return
        try:
            await handler(origin, content)
        except MatrixError as e:
            log.info("EDU %s from %s refused: %s", edu["edu_type"], origin, e)
        except Exception:
            log.exception("EDU %s from %s failed", edu["edu_type"], origin)
