"""Federation destinations as the admin API reads them (federation_destinations of migration 0010).

The outbound queue itself, and ending a backoff, are FederationQueueStore's.
"""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class DestinationRow:
    destination: str
    # Consecutive failed attempts (0 when healthy) and the earliest next attempt (ms, 0 when none).
    failures: int
    retry_after_ts: int
    last_success_ts: int | None


# A member's server name is everything after the first colon of its user id.
_JOINED_ROOMS = """
    SELECT DISTINCT room_id FROM current_state
    WHERE type = 'm.room.member' AND membership = 'join'
      AND substr(state_key, strpos(state_key, ':') + 1) = $1
"""


class AdminFederationStore:
    def __init__(self, db: Database):
        self.db = db

    async def destinations(self, search: str | None) -> list[DestinationRow]:
        """Every destination whose name holds ``search`` (case-insensitive), by name."""
        rows = await self.db.fetch(
            "SELECT destination, failures, retry_after_ts, last_success_ts FROM federation_destinations"
            " WHERE $1::text IS NULL OR strpos(lower(destination), lower($1)) > 0"
            " ORDER BY destination",
            search,
        )
        return [DestinationRow(**dict(r)) for r in rows]

    async def destination(self, destination: str) -> DestinationRow | None:
        row = await self.db.fetchrow(
            "SELECT destination, failures, retry_after_ts, last_success_ts FROM federation_destinations"
            " WHERE destination = $1",
            destination,
        )
        return DestinationRow(**dict(row)) if row else None

    async def shared_rooms(
        self, server_name: str, start: int, limit: int, descending: bool
    ) -> tuple[list[tuple[str, int | None]], int]:
        """(room id, the room's latest stream ordering) of the rooms where the server has a
        joined member, by room id; and how many there are."""
        order = "DESC" if descending else "ASC"
        rows = await self.db.fetch(
            f"SELECT r.room_id, (SELECT max(e.stream_ordering) FROM events e WHERE e.room_id = r.room_id)"
            f" AS stream_ordering FROM ({_JOINED_ROOMS}) r ORDER BY r.room_id {order} LIMIT $2 OFFSET $3",
            server_name, limit, start,
        )
        total = await self.db.fetchval(f"SELECT count(*) FROM ({_JOINED_ROOMS}) r", server_name)
        return [(r["room_id"], r["stream_ordering"]) for r in rows], total
