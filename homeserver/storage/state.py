"""Room state: state groups stored as deltas, and the materialised current state.

A state group is the full state of a room at some point. Each group stores only
its difference from a parent group; after MAX_CHAIN_LENGTH deltas a full
snapshot starts a new chain, so reading a group touches a bounded number of
rows and space grows with the changes, not with events x state.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import asyncpg

from homeserver.protocol.events import StateKey
from homeserver.storage.cache import LruCache
from homeserver.storage.db import Database

StateMap = Mapping[StateKey, str]

MAX_CHAIN_LENGTH = 50

# One row of a room's current state, set; ``changed_at`` (migration 0025) is the event
# stream position of the write, which SyncQueries.memberships reads the changes by.
_UPSERT_CURRENT_STATE = (
    "INSERT INTO current_state (room_id, type, state_key, event_id, membership, changed_at)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT (room_id, type, state_key) DO UPDATE"
    " SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership, changed_at = EXCLUDED.changed_at"
)

# Every write of a room's current state moves the room's state epoch (migration 0026), in
# its transaction: a message written on a tip read before the write is refused (the state
# it was checked against is no longer the room's; storage/events.py insert_on_tip).
_MOVE_STATE_EPOCH = "UPDATE rooms SET state_epoch = state_epoch + 1 WHERE room_id = $1 RETURNING state_epoch"
# One row set, and the epoch moved, in one statement (a local state event's).
_SET_ONE_AND_MOVE_STATE_EPOCH = (
    f"WITH epoch AS ({_MOVE_STATE_EPOCH}), entry AS ({_UPSERT_CURRENT_STATE})"
    " SELECT state_epoch FROM epoch"
)


class StateStore:
    def __init__(self, db: Database, cache_size: int = 500):
        self.db = db
        # group id -> (state map, chain length)
        self._groups: LruCache[int, tuple[dict[StateKey, str], int]] = LruCache(cache_size)

    async def get_state(self, group: int | None) -> dict[StateKey, str]:
        """The full state map of a group. Callers must not modify it."""
        if group is None:
            return {}
        return (await self._load(group))[0]

    async def get_states(self, groups: Iterable[int | None]) -> dict[int, dict[StateKey, str]]:
        """The full state maps of many groups; those not cached are read together, in one
        query, whatever their number. Callers must not modify them."""
        wanted = {g for g in groups if g is not None}
        out: dict[int, dict[StateKey, str]] = {}
        missing = []
        for group in wanted:
            cached = self._groups.get(group)
            if cached is None:
                missing.append(group)
            else:
                out[group] = cached[0]
        if missing:
            for group, loaded in (await self._load_many(missing)).items():
                out[group] = loaded[0]
        return out

    async def get_entries(
        self, groups: Iterable[int | None], keys: list[StateKey],
    ) -> dict[int, dict[StateKey, str]]:
        """A few entries (``keys``) of the state of many groups, in one query for the
        groups not cached: the chains are walked for those keys only, so a visibility
        check in a room of 10,000 members reads two entries per group, not its whole state."""
        wanted = {g for g in groups if g is not None}
        out: dict[int, dict[StateKey, str]] = {}
        missing = []
        for group in wanted:
            cached = self._groups.get(group)
            if cached is None:
                missing.append(group)
            else:
                out[group] = {k: cached[0][k] for k in keys if k in cached[0]}
        if missing and keys:
            rows = await self.db.fetch(
                """
                WITH RECURSIVE chain (root, id, prev_group, distance) AS (
                    SELECT id, id, prev_group, 0 FROM state_groups WHERE id = ANY($1::bigint[])
                    UNION ALL
                    SELECT c.root, g.id, g.prev_group, c.distance + 1
                    FROM state_groups g JOIN chain c ON g.id = c.prev_group
                )
                SELECT DISTINCT ON (c.root, e.type, e.state_key) c.root, e.type, e.state_key, e.event_id
                FROM state_group_entries e JOIN chain c ON e.state_group = c.id
                JOIN unnest($2::text[], $3::text[]) AS k (type, state_key)
                    ON e.type = k.type AND e.state_key = k.state_key
                ORDER BY c.root, e.type, e.state_key, c.distance
                """,
                missing, [k[0] for k in keys], [k[1] for k in keys],
            )
            for group in missing:
                out[group] = {}
            for r in rows:
                if r["event_id"] is not None:
                    out[r["root"]][(r["type"], r["state_key"])] = r["event_id"]
        return out

    async def _load(self, group: int) -> tuple[dict[StateKey, str], int]:
        cached = self._groups.get(group)
        if cached is not None:
            return cached
        return (await self._load_many([group]))[group]

    async def _load_many(self, groups: list[int]) -> dict[int, tuple[dict[StateKey, str], int]]:
        """Resolve the chains of several groups in one statement: each group's own entries
        win over its parents' (the nearest one first), NULL entries remove a key."""
        rows = await self.db.fetch(
            """
            WITH RECURSIVE chain (root, id, prev_group, distance) AS (
                SELECT id, id, prev_group, 0 FROM state_groups WHERE id = ANY($1::bigint[])
                UNION ALL
                SELECT c.root, g.id, g.prev_group, c.distance + 1
                FROM state_groups g JOIN chain c ON g.id = c.prev_group
            ),
            entries AS (
                SELECT DISTINCT ON (c.root, e.type, e.state_key) c.root, e.type, e.state_key, e.event_id
                FROM state_group_entries e JOIN chain c ON e.state_group = c.id
                ORDER BY c.root, e.type, e.state_key, c.distance
            )
            SELECT root, type, state_key, event_id, NULL::integer AS chain_length
            FROM entries WHERE event_id IS NOT NULL
            UNION ALL
            SELECT id, NULL, NULL, NULL, chain_length FROM state_groups WHERE id = ANY($1::bigint[])
            """,
            groups,
        )
        states: dict[int, dict[StateKey, str]] = {g: {} for g in groups}
        lengths: dict[int, int] = {}
        for r in rows:
            if r["type"] is None:
                lengths[r["root"]] = r["chain_length"] or 0
            else:
                states[r["root"]][(r["type"], r["state_key"])] = r["event_id"]
        out = {}
        for group in groups:
            loaded = (states[group], lengths.get(group, 0))
            self._groups.set(group, loaded)
            out[group] = loaded
        return out

    async def store_group(
        self,
        conn: asyncpg.Connection,
        room_id: str,
        prev_group: int | None,
        delta: Mapping[StateKey, str | None],
        full_state: dict[StateKey, str],
    ) -> int:
        """Store a new group equal to ``full_state``, as a delta from ``prev_group`` if short enough."""
        prev_chain = (await self._load(prev_group))[1] if prev_group is not None else None
        if prev_chain is not None and prev_chain < MAX_CHAIN_LENGTH:
            parent, chain_length, entries = prev_group, prev_chain + 1, dict(delta)
        else:
            parent, chain_length, entries = None, 0, dict(full_state)
        group = await conn.fetchval(
            "INSERT INTO state_groups (room_id, prev_group, chain_length) VALUES ($1, $2, $3) RETURNING id",
            room_id, parent, chain_length,
        )
        if entries:
            await conn.executemany(
                "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
                " VALUES ($1, $2, $3, $4)",
                [(group, t, k, e) for (t, k), e in entries.items()],
            )
        # Cached only after commit would be safer; a rolled-back id is never referenced again.
        self._groups.set(group, (full_state, chain_length))
        return group

    # Current state

    async def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        rows = await self.db.fetch(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1", room_id
        )
        return {(r["type"], r["state_key"]): r["event_id"] for r in rows}

    async def get_current_state_ids_for(self, room_id: str, keys: list[StateKey]) -> dict[StateKey, str]:
        """The current state event ids of some (type, state_key) pairs, in one query."""
        rows = await self.db.fetch(
            "SELECT c.type, c.state_key, c.event_id FROM current_state c"
            " JOIN unnest($2::text[], $3::text[]) AS k (type, state_key)"
            " ON c.type = k.type AND c.state_key = k.state_key WHERE c.room_id = $1",
            room_id, [k[0] for k in keys], [k[1] for k in keys],
        )
        return {(r["type"], r["state_key"]): r["event_id"] for r in rows}

    async def get_current_state_event_id(self, room_id: str, event_type: str, state_key: str) -> str | None:
        return await self.db.fetchval(
            "SELECT event_id FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3",
            room_id, event_type, state_key,
        )

    async def update_current_state(
        self, conn: asyncpg.Connection, room_id: str, key: StateKey, event_id: str, membership: str | None,
        position: int,
    ) -> int | None:
        """``position``: the event stream position of the write (the event's), in its
        transaction: what a read of the memberships changed since a position goes by.
        Returns the room's new state epoch (None: the room has no row, known only by an
        invite)."""
        return await conn.fetchval(
            _SET_ONE_AND_MOVE_STATE_EPOCH, room_id, key[0], key[1], event_id, membership, position)

    async def apply_current_state_delta(
        self, conn: asyncpg.Connection, room_id: str,
        changes: Mapping[StateKey, tuple[str, str | None] | None], position: int,
    ) -> int | None:
        """Change several entries of a room's current state: key -> (event id, membership), or None to remove.

        State resolution after a federated event may change or remove any entry, not just one.
        ``position`` and what is returned: as for update_current_state.
        """
        upserts = [(k[0], k[1], v[0], v[1]) for k, v in changes.items() if v is not None]
        removals = [k for k, v in changes.items() if v is None]
        if upserts:
            await conn.executemany(_UPSERT_CURRENT_STATE, [(room_id, *row, position) for row in upserts])
        if removals:
            await conn.execute(
                "DELETE FROM current_state c USING unnest($2::text[], $3::text[]) AS k (type, state_key)"
                " WHERE c.room_id = $1 AND c.type = k.type AND c.state_key = k.state_key",
                room_id, [k[0] for k in removals], [k[1] for k in removals],
            )
        if not changes:
            return None
        return await conn.fetchval(_MOVE_STATE_EPOCH, room_id)

    async def get_membership(self, room_id: str, user_id: str) -> tuple[str, str] | None:
        """(membership, event id) of a user's current membership in a room."""
        row = await self.db.fetchrow(
            "SELECT membership, event_id FROM current_state"
            " WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2",
            room_id, user_id,
        )
        return (row["membership"], row["event_id"]) if row else None

    async def get_rooms_for_user(self, user_id: str) -> dict[str, tuple[str, str]]:
        """room id -> (membership, membership event id) for every room the user has a membership in."""
        rows = await self.db.fetch(
            "SELECT room_id, membership, event_id FROM current_state"
            " WHERE type = 'm.room.member' AND state_key = $1",
            user_id,
        )
        return {r["room_id"]: (r["membership"], r["event_id"]) for r in rows}

    async def get_members(self, room_id: str, membership: str | None = None) -> dict[str, str]:
        """user id -> membership for the room's current members (optionally of one membership)."""
        rows = await self.db.fetch(
            "SELECT state_key, membership FROM current_state"
            " WHERE room_id = $1 AND type = 'm.room.member' AND ($2::text IS NULL OR membership = $2)",
            room_id, membership,
        )
        return {r["state_key"]: r["membership"] for r in rows}
