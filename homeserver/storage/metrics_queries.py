"""The few numbers the Prometheus metrics read from the database at scrape time."""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class FederationQueueDepth:
    pdus: int
    edus: int
    # Destinations that failed last time and wait out their backoff.
    backing_off: int


class MetricsQueries:
    def __init__(self, db: Database):
        self.db = db

    async def federation_queue_depth(self, now_ms: int) -> FederationQueueDepth:
        """Queued PDUs and EDUs over all destinations, in one round trip."""
        row = await self.db.fetchrow(
            """
            SELECT (SELECT count(*) FROM federation_pdu_queue) AS pdus,
                   (SELECT count(*) FROM federation_edu_queue) AS edus,
                   (SELECT count(*) FROM federation_destinations WHERE retry_after_ts > $1) AS backing_off
            """,
            now_ms,
        )
        return FederationQueueDepth(pdus=row["pdus"], edus=row["edus"], backing_off=row["backing_off"])
