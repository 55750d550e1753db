"""History purge jobs of the admin API (table purge_history_jobs), and where an event sits."""

from __future__ import annotations

from typing import Any

from homeserver.storage.db import Database


class AdminPurgeStore:
    def __init__(self, db: Database):
        self.db = db

    async def add_job(self, purge_id: str, room_id: str, now: int) -> bool:
        """False when a purge of the room is already active (one at a time per room)."""
        status = await self.db.execute(
            "INSERT INTO purge_history_jobs (purge_id, room_id, status, created_ts, updated_ts)"
            " VALUES ($1, $2, 'active', $3, $3) ON CONFLICT (room_id) WHERE status = 'active' DO NOTHING",
            purge_id, room_id, now,
        )
        return status.endswith(" 1")

    async def finish_job(self, purge_id: str, status: str, now: int, error: str | None = None) -> None:
        await self.db.execute(
            "UPDATE purge_history_jobs SET status = $2, updated_ts = $3, error = $4 WHERE purge_id = $1",
            purge_id, status, now, error,
        )

    async def touch_job(self, purge_id: str, now: int) -> None:
        """A running purge shows it is alive (a restart fails only jobs nobody touched lately)."""
        await self.db.execute("UPDATE purge_history_jobs SET updated_ts = $2 WHERE purge_id = $1", purge_id, now)

    async def job(self, purge_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            "SELECT purge_id, room_id, status, error FROM purge_history_jobs WHERE purge_id = $1", purge_id
        )
        return dict(row) if row else None

    async def fail_unfinished_jobs(self, older_than_ts: int, error: str, now: int) -> int:
        status = await self.db.execute(
            "UPDATE purge_history_jobs SET status = 'failed', error = $2, updated_ts = $3"
            " WHERE status = 'active' AND updated_ts < $1",
            older_than_ts, error, now,
        )
        return int(status.split()[-1])

    async def event_position(self, event_id: str) -> tuple[str, int] | None:
        """(room id, stream ordering) of a stored event that is not an outlier."""
        row = await self.db.fetchrow(
            "SELECT room_id, stream_ordering FROM events WHERE event_id = $1 AND NOT outlier", event_id
        )
        return (row["room_id"], row["stream_ordering"]) if row else None
