"""The admin API's view of rooms (list and details), blocked rooms and room delete jobs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from homeserver.storage.admin_users import contains_pattern
from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class RoomQuery:
    offset: int
    limit: int
    search_term: str | None = None
    order_by: str = "name"
    descending: bool = False
    public_rooms: bool | None = None
    empty_rooms: bool | None = None


# order_by values of Synapse's room list -> columns of the row query; nothing else is ordered by.
ORDER_COLUMNS = {
    "name": "name", "alphabetical": "name", "size": "joined_members",
    "canonical_alias": "canonical_alias", "joined_members": "joined_members",
    "joined_local_members": "joined_local_members", "version": "version", "creator": "creator",
    "encryption": "encryption", "federatable": "federatable", "public": "public",
    "join_rules": "join_rules", "guest_access": "guest_access", "history_visibility": "history_visibility",
    "state_events": "state_events",
    # synapse-admin sorts by its record's id (the room id) when that column is clicked.
    "id": "room_id", "room_id": "room_id",
}


def _state(room: str, event_type: str, path: str) -> str:
    """The content field at ``path`` of a room's current state event of a type (state key '')."""
    return (
        f"(SELECT e.json::jsonb #>> '{{content,{path}}}' FROM current_state cs"
        f" JOIN events e ON e.event_id = cs.event_id"
        f" WHERE cs.room_id = {room} AND cs.type = '{event_type}' AND cs.state_key = '')"
    )


# One row per room with every field Synapse's room list answers; $1 is our server name.
_ROOMS = f"""
SELECT r.room_id, r.room_version AS version, r.creator, r.is_public AS public,
  {_state('r.room_id', 'm.room.name', 'name')} AS name,
  {_state('r.room_id', 'm.room.canonical_alias', 'alias')} AS canonical_alias,
  {_state('r.room_id', 'm.room.avatar', 'url')} AS avatar,
  {_state('r.room_id', 'm.room.topic', 'topic')} AS topic,
  {_state('r.room_id', 'm.room.encryption', 'algorithm')} AS encryption,
  {_state('r.room_id', 'm.room.join_rules', 'join_rule')} AS join_rules,
  {_state('r.room_id', 'm.room.guest_access', 'guest_access')} AS guest_access,
  {_state('r.room_id', 'm.room.history_visibility', 'history_visibility')} AS history_visibility,
  {_state('r.room_id', 'm.room.create', 'type')} AS room_type,
  coalesce({_state('r.room_id', 'm.room.create', 'm.federate')}, 'true') <> 'false' AS federatable,
  (SELECT count(*) FROM current_state m WHERE m.room_id = r.room_id AND m.type = 'm.room.member'
     AND m.membership = 'join') AS joined_members,
  (SELECT count(*) FROM current_state m WHERE m.room_id = r.room_id AND m.type = 'm.room.member'
     AND m.membership = 'join' AND right(m.state_key, length($1) + 1) = ':' || $1) AS joined_local_members,
  (SELECT count(*) FROM current_state s WHERE s.room_id = r.room_id) AS state_events
FROM rooms r
"""

_ROOM_FIELDS = (
    "room_id", "name", "canonical_alias", "joined_members", "joined_local_members", "version", "creator",
    "encryption", "federatable", "public", "join_rules", "guest_access", "history_visibility",
    "state_events", "room_type",
)


def _room(row: Any, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    return {field: row[field] for field in _ROOM_FIELDS + extra}


class AdminRoomStore:
    def __init__(self, db: Database):
        self.db = db

    async def list_rooms(self, query: RoomQuery, server_name: str) -> tuple[list[dict[str, Any]], int]:
        """One page of rooms in Synapse's list shape, and how many match in all."""
        order = ORDER_COLUMNS[query.order_by]
        direction = "DESC" if query.descending else "ASC"
        nulls = "NULLS LAST" if not query.descending else "NULLS FIRST"
        rows = await self.db.fetch(
            f"SELECT *, count(*) OVER () AS total FROM ({_ROOMS}) q"
            " WHERE ($2::text IS NULL OR q.room_id = $3 OR q.name ILIKE $2 OR q.canonical_alias ILIKE $2)"
            " AND ($4::bool IS NULL OR q.public = $4)"
            " AND ($5::bool IS NULL OR (q.joined_members = 0) = $5)"
            f" ORDER BY {order} {direction} {nulls}, q.room_id {direction}"
            " LIMIT $6 OFFSET $7",
            server_name, contains_pattern(query.search_term), query.search_term,
            query.public_rooms, query.empty_rooms, query.limit, query.offset,
        )
        if rows:
            total = rows[0]["total"]
        elif query.offset:
            _, total = await self.list_rooms(dataclasses.replace(query, offset=0, limit=1), server_name)
        else:
            total = 0
        return [_room(r) for r in rows], total

    async def room_details(self, room_id: str, server_name: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            f"SELECT * FROM ({_ROOMS} WHERE r.room_id = $2) q", server_name, room_id
        )
        if row is None:
            return None
        details = _room(row, ("avatar", "topic"))
        details["joined_local_devices"] = await self.db.fetchval(
            "SELECT count(*) FROM devices d JOIN current_state m ON m.state_key = d.user_id"
            " WHERE m.room_id = $1 AND m.type = 'm.room.member' AND m.membership = 'join'",
            room_id,
        )
        # Forgotten: every local user who was ever in the room has left and forgotten it.
        details["forgotten"] = await self.db.fetchval(
            "SELECT count(*) > 0 AND bool_and(f.user_id IS NOT NULL) FROM current_state m"
            " LEFT JOIN room_forgotten f ON f.user_id = m.state_key AND f.room_id = m.room_id"
            " WHERE m.room_id = $1 AND m.type = 'm.room.member'"
            " AND right(m.state_key, length($2) + 1) = ':' || $2",
            room_id, server_name,
        )
        return details

    async def forward_extremities(self, room_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT e.event_id, e.state_group_after AS state_group, e.depth FROM forward_extremities f"
            " JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1 ORDER BY e.depth DESC, e.event_id",
            room_id,
        )
        # The time each was received is not recorded: received_ts is null.
        return [{**dict(r), "received_ts": None} for r in rows]

    async def delete_forward_extremities(self, room_id: str) -> int:
        """Delete the room's forward extremities but the newest (by stream ordering); how many went."""
        status = await self.db.execute(
            "DELETE FROM forward_extremities WHERE room_id = $1 AND event_id <> ("
            " SELECT f.event_id FROM forward_extremities f JOIN events e ON e.event_id = f.event_id"
            " WHERE f.room_id = $1 ORDER BY e.stream_ordering DESC LIMIT 1)",
            room_id,
        )
        return int(status.split()[-1])

    # Blocked rooms

    async def block(self, room_id: str, by: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO blocked_rooms (room_id, blocked_by, blocked_ts) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id) DO NOTHING",
            room_id, by, now,
        )

    async def unblock(self, room_id: str) -> None:
        await self.db.execute("DELETE FROM blocked_rooms WHERE room_id = $1", room_id)

    async def blocked_by(self, room_id: str) -> str | None:
        return await self.db.fetchval("SELECT blocked_by FROM blocked_rooms WHERE room_id = $1", room_id)

    # Room delete jobs

    async def add_delete_job(self, delete_id: str, room_id: str, status: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO room_delete_jobs (delete_id, room_id, status, created_ts, updated_ts)"
            " VALUES ($1, $2, $3, $4, $4)",
            delete_id, room_id, status, now,
        )

    async def update_delete_job(
        self, delete_id: str, status: str, now: int, shutdown_room: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        await self.db.execute(
            "UPDATE room_delete_jobs SET status = $2, updated_ts = $3,"
            " shutdown_room = coalesce($4, shutdown_room), error = coalesce($5, error)"
            " WHERE delete_id = $1",
            delete_id, status, now, json.dumps(shutdown_room) if shutdown_room is not None else None, error,
        )

    async def delete_job(self, delete_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            "SELECT delete_id, room_id, status, error, shutdown_room FROM room_delete_jobs WHERE delete_id = $1",
            delete_id,
        )
        return _job(row) if row else None

    async def delete_jobs_of_room(self, room_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT delete_id, room_id, status, error, shutdown_room FROM room_delete_jobs"
            " WHERE room_id = $1 ORDER BY created_ts, delete_id",
            room_id,
        )
        return [_job(r) for r in rows]

    async def fail_unfinished_jobs(self, older_than_ts: int, error: str, now: int) -> int:
        status = await self.db.execute(
            "UPDATE room_delete_jobs SET status = 'failed', error = $2, updated_ts = $3"
            " WHERE status IN ('shutting_down', 'purging') AND updated_ts < $1",
            older_than_ts, error, now,
        )
        return int(status.split()[-1])


def _job(row: Any) -> dict[str, Any]:
    return {
        "delete_id": row["delete_id"], "room_id": row["room_id"], "status": row["status"],
        "error": row["error"], "shutdown_room": json.loads(row["shutdown_room"]),
    }
