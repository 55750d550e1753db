"""Federation destinations for server admins (Synapse docs: docs/usage/administration/admin_api/federation.md).

A destination is a server we have queued something for (federation/sender.py).
The table keeps the count of consecutive failures and the time of the next
attempt, not the time of each attempt: Synapse's retry_last_ts, retry_interval
and failure_ts are derived from those with the sender's backoff rule (initial
delay doubled per failure, capped), so they are estimates (docs/admin-api.md).
The highest stream ordering sent is not kept: last_successful_stream_ordering is null.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from homeserver.errors import MatrixError, not_found
from homeserver.services.admin_audit import audit
from homeserver.services.auth import Requester
from homeserver.storage.admin_federation import AdminFederationStore, DestinationRow
from homeserver.storage.federation_queue import FederationQueueStore

DESTINATION_ORDER_BY = ("destination", "retry_last_ts", "retry_interval", "failure_ts",
                        "last_successful_stream_ordering")


class AdminFederationService:
    def __init__(self, store: AdminFederationStore, queue: FederationQueueStore):
        self.store = store
        self.queue = queue
        # The sender's backoff rule; homeserver/admin/ sets these from the running sender
        # (the defaults are federation/sender.py's).
        self.initial_backoff_ms = 5_000
        self.max_backoff_ms = 30 * 60 * 1000
        # Ends a backoff in the sender too (its in-memory backoff, its waiting loop): the
        # sender's notify_destination_up when federation runs; else the table alone is reset.
        self.destination_up: Callable[[str], Awaitable[None]] | None = None

    async def list(self, start: int, limit: int, order_by: str, descending: bool,
                   search: str | None) -> dict[str, Any]:
        # One row per server we federate with: few enough to derive and sort here.
        records = [self._record(row) for row in await self.store.destinations(search)]
        if order_by != "destination":
            # Stable: equal values stay by name. Nulls last going forwards, first backwards (as PostgreSQL).
            records.sort(key=lambda r: (r[order_by] is None, r[order_by] or 0), reverse=descending)
        elif descending:
            records.reverse()
        chunk = records[start:start + limit]
        answer: dict[str, Any] = {"destinations": chunk, "total": len(records)}
        if start + limit < len(records):
            answer["next_token"] = str(start + len(chunk))
        return answer

    async def get(self, destination: str) -> dict[str, Any]:
        return self._record(await self._known(destination))

    async def rooms(self, destination: str, start: int, limit: int, descending: bool) -> dict[str, Any]:
        await self._known(destination)
        rooms, total = await self.store.shared_rooms(destination, start, limit, descending)
        answer: dict[str, Any] = {
            "rooms": [{"room_id": room_id, "stream_ordering": ordering} for room_id, ordering in rooms],
            "total": total,
        }
        if start + limit < total:
            answer["next_token"] = str(start + len(rooms))
        return answer

    async def reset_connection(self, who: Requester, destination: str) -> None:
        """End the destination's backoff so the sender tries again now (as Synapse: 400 if none)."""
        row = await self._known(destination)
        if not _backing_off(row):
            raise MatrixError(400, "M_UNKNOWN", "The retry timing does not need to be reset for this destination.")
        if self.destination_up is not None:
            await self.destination_up(destination)
        else:
            await self.queue.clear_backoff(destination)
        audit(who.user_id, "reset_federation_connection", destination, failures=row.failures)

    async def _known(self, destination: str) -> DestinationRow:
        row = await self.store.destination(destination)
        if row is None:
            raise not_found("Unknown destination")
        return row

    def _record(self, row: DestinationRow) -> dict[str, Any]:
        retry_last_ts, retry_interval, failure_ts = 0, 0, None
        if _backing_off(row):
            retry_interval = self._delay_after(row.failures) if row.failures else 0
            retry_last_ts = max(row.retry_after_ts - retry_interval, 0)
            failure_ts = max(retry_last_ts - self._delays_before(row.failures), 0)
        return {
            "destination": row.destination,
            "retry_last_ts": retry_last_ts,
            "retry_interval": retry_interval,
            "failure_ts": failure_ts,
            "last_successful_stream_ordering": None,
        }

    def _delay_after(self, failures: int) -> int:
        """The wait the sender set after its ``failures``-th failure in a row (ms)."""
        return min(self.initial_backoff_ms * 2 ** min(failures - 1, 40), self.max_backoff_ms)

    def _delays_before(self, failures: int) -> int:
        """The waits between the first failure of the run and the last (ms)."""
        total, k = 0, 1
        while k < failures:
            delay = self._delay_after(k)
            if delay >= self.max_backoff_ms:
                return total + (failures - k) * self.max_backoff_ms
            total += delay
            k += 1
        return total


def _backing_off(row: DestinationRow) -> bool:
    return row.failures > 0 or row.retry_after_ts > 0
