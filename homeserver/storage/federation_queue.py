"""The durable outbound federation queue: PDUs and EDUs per destination, and each destination's state.

A row leaves the queue only when the transaction that carried it is finished
(answered 200, or refused for good). A transaction's rows are marked with its
id when it is built, so a retry (also after a restart) resends exactly the same
contents under the same id, as the spec asks.
Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions
"""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class DestinationState:
    destination: str
    failures: int
    retry_after_ts: int
    pending_txn_id: int | None
    last_success_txn_id: int | None


@dataclasses.dataclass(frozen=True)
class QueuedEdu:
    serial: int
    edu_type: str
    content: str  # JSON text


@dataclasses.dataclass(frozen=True)
class QueuedTransaction:
    txn_id: int
    # Event ids, oldest (lowest stream ordering) first.
    pdus: list[str]
    edus: list[QueuedEdu]


_ENSURE_DESTINATIONS = """
    INSERT INTO federation_destinations (destination)
    SELECT d FROM unnest($1::text[]) AS d ON CONFLICT DO NOTHING
"""


class FederationQueueStore:
    def __init__(self, db: Database):
        self.db = db

    # Queueing

    async def enqueue_pdu(self, destinations: list[str], event_id: str, stream_ordering: int) -> None:
        """Queue an event for each destination (once: a queued event is not queued twice)."""
        await self.db.execute(
            f"""
            WITH dests AS ({_ENSURE_DESTINATIONS})
            INSERT INTO federation_pdu_queue (destination, event_id, stream_ordering)
            SELECT d, $2, $3 FROM unnest($1::text[]) AS d ON CONFLICT DO NOTHING
            """,
            destinations, event_id, stream_ordering,
        )

    async def enqueue_edu(
        self, destinations: list[str], edu_type: str, content_json: str, coalesce_key: str | None
    ) -> None:
        """Queue an EDU for each destination (distinct names: the upsert may touch a row only once).

        With a ``coalesce_key``, a queued EDU of the same key not yet in a
        transaction takes the new content instead of a second row being added.
        """
        await self.db.execute(
            f"""
            WITH dests AS ({_ENSURE_DESTINATIONS})
            INSERT INTO federation_edu_queue (destination, edu_type, content, coalesce_key)
            SELECT d, $2, $3, $4 FROM unnest($1::text[]) AS d
            ON CONFLICT (destination, coalesce_key) WHERE coalesce_key IS NOT NULL AND txn_id IS NULL
            DO UPDATE SET content = EXCLUDED.content
            """,
            destinations, edu_type, content_json, coalesce_key,
        )

    # Reading

    async def destinations_with_work(self) -> list[str]:
        rows = await self.db.fetch(
            "SELECT destination FROM federation_destinations d"
            " WHERE EXISTS (SELECT 1 FROM federation_pdu_queue q WHERE q.destination = d.destination)"
            " OR EXISTS (SELECT 1 FROM federation_edu_queue q WHERE q.destination = d.destination)"
        )
        return [row["destination"] for row in rows]

    async def get_destination(self, destination: str) -> DestinationState:
        row = await self.db.fetchrow(
            "SELECT destination, failures, retry_after_ts, pending_txn_id, last_success_txn_id"
            " FROM federation_destinations WHERE destination = $1",
            destination,
        )
        if row is None:
            return DestinationState(destination, 0, 0, None, None)
        return DestinationState(**dict(row))

    async def queued_counts(self, destination: str) -> tuple[int, int]:
        """(PDUs, EDUs) queued for a destination."""
        row = await self.db.fetchrow(
            "SELECT (SELECT count(*) FROM federation_pdu_queue WHERE destination = $1) AS pdus,"
            " (SELECT count(*) FROM federation_edu_queue WHERE destination = $1) AS edus",
            destination,
        )
        return row["pdus"], row["edus"]

    # The transaction in flight

    async def claim_transaction(
        self, destination: str, now_ms: int, max_pdus: int, max_edus: int
    ) -> QueuedTransaction | None:
        """The destination's pending transaction, or a new one of its oldest rows; None if nothing is queued.

        A new transaction's id is the current time in ms, or one more than the
        last id if that is later: increasing per destination, and still fresh
        after a database restore (receivers deduplicate by (origin, txn id)).
        """
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO federation_destinations (destination) VALUES ($1) ON CONFLICT DO NOTHING",
                destination,
            )
            state = await conn.fetchrow(
                "SELECT last_txn_id, pending_txn_id FROM federation_destinations"
                " WHERE destination = $1 FOR UPDATE",
                destination,
            )
            txn_id = state["pending_txn_id"]
            if txn_id is not None:
                pdus, edus = await self._rows_of(conn, destination, txn_id)
                if pdus or edus:
                    return QueuedTransaction(txn_id, pdus, edus)
            txn_id = max(now_ms, state["last_txn_id"] + 1)
            pdu_rows = await conn.fetch(
                "UPDATE federation_pdu_queue SET txn_id = $2 WHERE serial IN ("
                " SELECT serial FROM federation_pdu_queue WHERE destination = $1 AND txn_id IS NULL"
                " ORDER BY stream_ordering LIMIT $3) RETURNING stream_ordering, event_id",
                destination, txn_id, max_pdus,
            )
            edu_rows = await conn.fetch(
                "UPDATE federation_edu_queue SET txn_id = $2 WHERE serial IN ("
                " SELECT serial FROM federation_edu_queue WHERE destination = $1 AND txn_id IS NULL"
                " ORDER BY serial LIMIT $3) RETURNING serial, edu_type, content",
                destination, txn_id, max_edus,
            )
            if not pdu_rows and not edu_rows:
                if state["pending_txn_id"] is not None:
                    await conn.execute(
                        "UPDATE federation_destinations SET pending_txn_id = NULL WHERE destination = $1",
                        destination,
                    )
                return None
            await conn.execute(
                "UPDATE federation_destinations SET last_txn_id = $2, pending_txn_id = $2 WHERE destination = $1",
                destination, txn_id,
            )
        return QueuedTransaction(
            txn_id,
            [r["event_id"] for r in sorted(pdu_rows, key=lambda r: r["stream_ordering"])],
            sorted((QueuedEdu(r["serial"], r["edu_type"], r["content"]) for r in edu_rows),
                   key=lambda e: e.serial),
        )

    async def _rows_of(self, conn: Any, destination: str, txn_id: int) -> tuple[list, list]:
        pdu_rows = await conn.fetch(
            "SELECT event_id FROM federation_pdu_queue WHERE destination = $1 AND txn_id = $2"
            " ORDER BY stream_ordering",
            destination, txn_id,
        )
        edu_rows = await conn.fetch(
            "SELECT serial, edu_type, content FROM federation_edu_queue WHERE destination = $1 AND txn_id = $2"
            " ORDER BY serial",
            destination, txn_id,
        )
        return (
            [r["event_id"] for r in pdu_rows],
            [QueuedEdu(r["serial"], r["edu_type"], r["content"]) for r in edu_rows],
        )

    async def finish_transaction(self, destination: str, txn_id: int, now_ms: int, delivered: bool) -> None:
        """Delete the transaction's rows; the destination answered, so its backoff ends."""
        await self.db.execute(
            """
            WITH pdus AS (DELETE FROM federation_pdu_queue WHERE destination = $1 AND txn_id = $2),
            edus AS (DELETE FROM federation_edu_queue WHERE destination = $1 AND txn_id = $2)
            UPDATE federation_destinations SET pending_txn_id = NULL, failures = 0, retry_after_ts = 0,
                last_success_txn_id = CASE WHEN $4 THEN $2 ELSE last_success_txn_id END,
                last_success_ts = CASE WHEN $4 THEN $3 ELSE last_success_ts END
            WHERE destination = $1 AND pending_txn_id = $2
            """,
            destination, txn_id, now_ms, delivered,
        )

    async def record_failure(self, destination: str, failures: int, retry_after_ts: int) -> None:
        await self.db.execute(
            "UPDATE federation_destinations SET failures = $2, retry_after_ts = $3 WHERE destination = $1",
            destination, failures, retry_after_ts,
        )

    async def clear_backoff(self, destination: str) -> bool:
        """End a destination's backoff; True if it was backing off."""
        status = await self.db.execute(
            "UPDATE federation_destinations SET failures = 0, retry_after_ts = 0"
            " WHERE destination = $1 AND (failures > 0 OR retry_after_ts > 0)",
            destination,
        )
        return status != "UPDATE 0"
