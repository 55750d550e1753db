"""Reports of events, rooms and users (migration 0015), for the admin API."""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database

KINDS = ("event", "room", "user")


@dataclasses.dataclass(frozen=True)
class Report:
    id: int
    kind: str
    reporter: str
    room_id: str | None
    event_id: str | None
    target_user_id: str | None
    reason: str | None
    score: int | None
    received_ts: int


_COLUMNS = "id, kind, reporter, room_id, event_id, target_user_id, reason, score, received_ts"


def _contains(value: str | None) -> str | None:
    """A LIKE pattern matching ``value`` anywhere, its own % and _ taken literally."""
    if value is None:
        return None
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class ReportStore:
    def __init__(self, db: Database):
        self.db = db

    async def add(
        self, kind: str, reporter: str, received_ts: int, *, room_id: str | None = None,
        event_id: str | None = None, target_user_id: str | None = None, reason: str | None = None,
        score: int | None = None,
    ) -> int:
        return await self.db.fetchval(
            "INSERT INTO reports (kind, reporter, room_id, event_id, target_user_id, reason, score, received_ts)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            kind, reporter, room_id, event_id, target_user_id, reason, score, received_ts,
        )

    async def page(
        self, kind: str, offset: int, limit: int, newest_first: bool, *,
        reporter_contains: str | None = None, room_contains: str | None = None,
        target_contains: str | None = None,
    ) -> tuple[list[Report], int]:
        """One page of a kind's reports by id, and how many match in all."""
        where = (
            "kind = $1 AND ($2::text IS NULL OR reporter LIKE $2)"
            " AND ($3::text IS NULL OR room_id LIKE $3) AND ($4::text IS NULL OR target_user_id LIKE $4)"
        )
        args = (kind, _contains(reporter_contains), _contains(room_contains), _contains(target_contains))
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM reports WHERE {where}"
            f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT $5 OFFSET $6",
            *args, limit, offset,
        )
        total = await self.db.fetchval(f"SELECT count(*) FROM reports WHERE {where}", *args)
        return [Report(**dict(row)) for row in rows], total

    async def get(self, report_id: int) -> Report | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM reports WHERE id = $1", report_id)
        return Report(**dict(row)) if row else None

    async def delete(self, kind: str, report_id: int) -> bool:
        return await self.db.execute("DELETE FROM reports WHERE kind = $1 AND id = $2", kind, report_id) != "DELETE 0"
