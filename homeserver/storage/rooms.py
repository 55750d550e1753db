"""Rooms, their aliases, and the rooms a user has forgotten."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import asyncpg

from homeserver.storage.db import Database

# The state (all with state key "") a directory entry is made of.
DIRECTORY_STATE_TYPES = (
    "m.room.create", "m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar",
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
)


# An event's JSON as jsonb. jsonb refuses the escape \u0000 (U+0000), which stored event
# JSON may hold: such escapes are dropped, and only they (an escaped backslash before
# "u0000" is left alone).
_EVENT_JSONB = r"regexp_replace(e.json, '(?<!\\)((?:\\\\)*)\\u0000', '\1', 'g')::jsonb"


@dataclasses.dataclass(frozen=True)
class PublishedRoomsQuery:
    limit: int
    search_term: str | None = None
    # None: rooms of every type; else these types, and rooms without one if include_untyped.
    room_types: tuple[str, ...] | None = None
    include_untyped: bool = False
    # A page key (joined members, room id): the page after it, or the one before it.
    after: tuple[int, str] | None = None
    before: tuple[int, str] | None = None


@dataclasses.dataclass(frozen=True)
class PublishedRoom:
    room_id: str
    joined_members: int
    # Event type -> content, for the DIRECTORY_STATE_TYPES the room has.
    state: dict[str, Any]


class RoomStore:
    def __init__(self, db: Database):
        self.db = db

    async def insert_room(
        self, conn: asyncpg.Connection, room_id: str, room_version: str, creator: str, now: int, is_public: bool
    ) -> None:
        await conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public)"
            " VALUES ($1, $2, $3, $4, $5)",
            room_id, room_version, creator, now, is_public,
        )

    async def ensure_room(self, conn: asyncpg.Connection | asyncpg.Pool, room_id: str, room_version: str,
                          creator: str | None, now: int) -> None:
        """The row of a room that lives on other servers (an invite, a join over federation)."""
        await conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public)"
            " VALUES ($1, $2, $3, $4, false) ON CONFLICT (room_id) DO NOTHING",
            room_id, room_version, creator, now,
        )

    async def room_exists(self, room_id: str) -> bool:
        return bool(await self.db.fetchval("SELECT 1 FROM rooms WHERE room_id = $1", room_id))

    # Aliases

    async def create_alias(self, alias: str, room_id: str, creator: str) -> bool:
        try:
            await self.db.execute(
                "INSERT INTO room_aliases (room_alias, room_id, creator) VALUES ($1, $2, $3)",
                alias, room_id, creator,
            )
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def insert_alias(self, conn: asyncpg.Connection, alias: str, room_id: str, creator: str) -> None:
        await conn.execute(
            "INSERT INTO room_aliases (room_alias, room_id, creator) VALUES ($1, $2, $3)",
            alias, room_id, creator,
        )

    async def get_alias(self, alias: str) -> tuple[str, str] | None:
        """(room id, creator) of an alias."""
        row = await self.db.fetchrow("SELECT room_id, creator FROM room_aliases WHERE room_alias = $1", alias)
        return (row["room_id"], row["creator"]) if row else None

    async def delete_alias(self, alias: str) -> None:
        await self.db.execute("DELETE FROM room_aliases WHERE room_alias = $1", alias)

    async def aliases_of_room(self, room_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT room_alias FROM room_aliases WHERE room_id = $1 ORDER BY room_alias", room_id
        )
        return [row["room_alias"] for row in rows]

    # Forgetting

    async def forget(self, user_id: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO room_forgotten (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            user_id, room_id,
        )

    async def unforget(self, conn: asyncpg.Connection, user_id: str, room_id: str) -> None:
        await conn.execute("DELETE FROM room_forgotten WHERE user_id = $1 AND room_id = $2", user_id, room_id)

    async def forgotten_rooms(self, user_id: str) -> set[str]:
        rows = await self.db.fetch("SELECT room_id FROM room_forgotten WHERE user_id = $1", user_id)
        return {row["room_id"] for row in rows}

    # The published room directory

    async def get_visibility(self, room_id: str) -> bool | None:
        """Whether the room is published in the directory; None for an unknown room."""
        return await self.db.fetchval("SELECT is_public FROM rooms WHERE room_id = $1", room_id)

    async def set_visibility(self, room_id: str, is_public: bool) -> None:
        await self.db.execute("UPDATE rooms SET is_public = $2 WHERE room_id = $1", room_id, is_public)

    async def count_published(self) -> int:
        return await self.db.fetchval("SELECT count(*) FROM rooms WHERE is_public")

    async def published_rooms(self, query: PublishedRoomsQuery) -> list[PublishedRoom]:
        """One page of published rooms, most joined members first, then by room id; with
        ``query.before``, the page that ends just before that key (still in that order)."""
        key = query.before or query.after
        backwards = query.before is not None
        rows = await self.db.fetch(
            f"""
            WITH listed AS (
                SELECT r.room_id,
                    (SELECT count(*) FROM current_state m WHERE m.room_id = r.room_id
                        AND m.type = 'm.room.member' AND m.membership = 'join') AS joined,
                    (SELECT jsonb_object_agg(c.type, {_EVENT_JSONB} -> 'content')
                        FROM current_state c JOIN events e ON e.event_id = c.event_id
                        WHERE c.room_id = r.room_id AND c.state_key = '' AND c.type = ANY($1::text[])) AS state
                FROM rooms r WHERE r.is_public
            )
            SELECT room_id, joined, state FROM listed
            WHERE ($2::text IS NULL OR room_id = $2
                   OR strpos(lower(coalesce(state -> 'm.room.name' ->> 'name', '')), lower($2)) > 0
                   OR strpos(lower(coalesce(state -> 'm.room.topic' ->> 'topic', '')), lower($2)) > 0
                   OR strpos(lower(coalesce(state -> 'm.room.canonical_alias' ->> 'alias', '')), lower($2)) > 0)
              AND ($3::text[] IS NULL OR state -> 'm.room.create' ->> 'type' = ANY($3::text[])
                   OR ($4 AND state -> 'm.room.create' ->> 'type' IS NULL))
              AND ($5::bigint IS NULL OR {'(joined > $5 OR (joined = $5 AND room_id < $6))' if backwards
                                          else '(joined < $5 OR (joined = $5 AND room_id > $6))'})
            ORDER BY {'joined, room_id DESC' if backwards else 'joined DESC, room_id'}
            LIMIT $7
            """,
            list(DIRECTORY_STATE_TYPES), query.search_term,
            list(query.room_types) if query.room_types is not None else None, query.include_untyped,
            key[0] if key else None, key[1] if key else None, query.limit,
        )
        rooms = [
            PublishedRoom(r["room_id"], r["joined"], json.loads(r["state"]) if r["state"] is not None else {})
            for r in rows
        ]
        return rooms[::-1] if backwards else rooms
