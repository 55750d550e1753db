"""Presence rows, one per local user, on their own stream."""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database

_COLUMNS = "user_id, state, status_msg, last_active_ts, last_sync_ts, explicit, stream_id"

# The local users who share a joined room with $1, and $1.
_PARTNERS = """
    SELECT other.state_key AS user_id
    FROM current_state mine
    JOIN current_state other ON other.room_id = mine.room_id
        AND other.type = 'm.room.member' AND other.membership = 'join'
    WHERE mine.type = 'm.room.member' AND mine.state_key = $1 AND mine.membership = 'join'
    UNION SELECT $1
"""


@dataclasses.dataclass(frozen=True)
class PresenceRow:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    last_sync_ts: int
    explicit: bool
    stream_id: int


class PresenceStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, user_id: str) -> PresenceRow | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM presence WHERE user_id = $1", user_id)
        return PresenceRow(**dict(row)) if row else None

    async def put(self, row: PresenceRow) -> None:
        await self.db.execute(
            f"INSERT INTO presence ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state, status_msg = EXCLUDED.status_msg,"
            " last_active_ts = EXCLUDED.last_active_ts, last_sync_ts = EXCLUDED.last_sync_ts,"
            " explicit = EXCLUDED.explicit, stream_id = EXCLUDED.stream_id",
            row.user_id, row.state, row.status_msg, row.last_active_ts, row.last_sync_ts, row.explicit,
            row.stream_id,
        )

    async def idle_since(self, before_ts: int) -> list[PresenceRow]:
        """Users not offline whose last sync is older than ``before_ts``."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM presence WHERE state <> 'offline' AND last_sync_ts < $1", before_ts)
        return [PresenceRow(**dict(r)) for r in rows]

    async def room_partners(self, user_id: str) -> list[str]:
        """The users sharing a joined room with ``user_id``, and ``user_id``."""
        rows = await self.db.fetch(_PARTNERS, user_id)
        return [r["user_id"] for r in rows]

    async def partners_changed(
        self, user_id: str, after: int, up_to: int, include_offline: bool,
    ) -> list[PresenceRow]:
        """The presence of ``user_id`` and of those sharing a joined room with them,
        changed in the window (after, up_to]."""
        rows = await self.db.fetch(
            f"SELECT {', '.join('p.' + c.strip() for c in _COLUMNS.split(','))}"
            f" FROM presence p JOIN ({_PARTNERS}) partners ON partners.user_id = p.user_id"
            " WHERE p.stream_id > $2 AND p.stream_id <= $3 AND ($4 OR p.state <> 'offline')"
            " ORDER BY p.stream_id",
            user_id, after, up_to, include_offline,
        )
        return [PresenceRow(**dict(r)) for r in rows]

    async def newly_shared(self, user_id: str, after_event: int, up_to_event: int) -> list[PresenceRow]:
        """The presence (not offline) of users who came to share a joined room with
        ``user_id`` through membership events in the event window (after, up_to]: those
        who joined one of the user's rooms, and everyone in a room the user joined."""
        rows = await self.db.fetch(
            f"""
            WITH mine AS (
                SELECT room_id FROM current_state
                WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'join'
            ), changed AS (
                SELECT e.room_id, e.state_key FROM events e JOIN mine USING (room_id)
                WHERE e.type = 'm.room.member' AND e.stream_ordering > $2 AND e.stream_ordering <= $3
            ), newcomers AS (
                SELECT state_key AS user_id FROM changed WHERE state_key <> $1
                UNION
                SELECT cs.state_key FROM current_state cs JOIN changed c ON c.room_id = cs.room_id
                WHERE c.state_key = $1 AND cs.type = 'm.room.member' AND cs.membership = 'join'
            )
            SELECT {', '.join('p.' + c.strip() for c in _COLUMNS.split(','))}
            FROM presence p JOIN newcomers n ON n.user_id = p.user_id
            WHERE p.state <> 'offline' AND p.user_id IN ({_PARTNERS})
            """,
            user_id, after_event, up_to_event,
        )
        return [PresenceRow(**dict(r)) for r in rows]
