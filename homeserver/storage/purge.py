"""Purging a room: every row this server holds about it, from every table, in one transaction.

Tables keyed by the room's events or state groups are listed by hand; after them, every
other table with a room_id column is emptied of the room, found in the catalogue, so a
table added by a later migration is covered without an edit here. KEPT_TABLES are the
admin's own records about the room, which must outlive it (the block, the delete job).
"""

from __future__ import annotations

from homeserver.storage.db import Database

KEPT_TABLES = frozenset({"blocked_rooms", "room_delete_jobs"})

_ROOM_EVENTS = "(SELECT event_id FROM events WHERE room_id = $1)"
_ROOM_GROUPS = "(SELECT id FROM state_groups WHERE room_id = $1)"

# Rows without a room_id of their own, deleted before the events and groups they hang on.
_BY_EVENT = (
    f"DELETE FROM event_edges WHERE event_id IN {_ROOM_EVENTS}",
    f"DELETE FROM event_auth WHERE event_id IN {_ROOM_EVENTS}",
    f"DELETE FROM redactions WHERE event_id IN {_ROOM_EVENTS} OR redacts IN {_ROOM_EVENTS}",
    f"DELETE FROM event_txn_ids WHERE event_id IN {_ROOM_EVENTS}",
    f"DELETE FROM federation_pdu_queue WHERE event_id IN {_ROOM_EVENTS}",
    f"DELETE FROM state_group_entries WHERE state_group IN {_ROOM_GROUPS}",
)
# Deleted last, in this order (state_groups reference each other within a room: one statement).
_LAST = ("events", "state_groups", "rooms")


class PurgeStore:
    def __init__(self, db: Database):
        self.db = db

    async def room_tables(self) -> list[str]:
        """Every table with a room_id column, but the kept ones."""
        rows = await self.db.fetch(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND column_name = 'room_id'"
            " ORDER BY table_name"
        )
        return [r["table_name"] for r in rows if r["table_name"] not in KEPT_TABLES]

    async def purge_room(self, room_id: str) -> tuple[dict[str, int], list[str]]:
        """Delete the room everywhere: rows deleted per table (for the log), and the ids of
        the deleted events (for the caches that hold them)."""
        tables = await self.room_tables()
        counts: dict[str, int] = {}
        async with self.db.transaction() as conn:
            event_ids = [r["event_id"] for r in await conn.fetch(
                "SELECT event_id FROM events WHERE room_id = $1", room_id)]
            for statement in _BY_EVENT:
                table = statement.split()[2]
                counts[table] = _count(await conn.execute(statement, room_id))
            for table in tables:
                if table in _LAST:
                    continue
                counts[table] = _count(await conn.execute(f'DELETE FROM "{table}" WHERE room_id = $1', room_id))
            for table in _LAST:
                counts[table] = _count(await conn.execute(f"DELETE FROM {table} WHERE room_id = $1", room_id))
        return counts, event_ids

    async def rows_left(self, room_id: str) -> dict[str, int]:
        """Rows still about the room, per table (for tests and checks): all zero after a purge."""
        left: dict[str, int] = {}
        for table in await self.room_tables():
            left[table] = await self.db.fetchval(f'SELECT count(*) FROM "{table}" WHERE room_id = $1', room_id)
        return left


def _count(status: str) -> int:
    return int(status.split()[-1])
