"""What the space hierarchy reads of a room's current state: the summary entries,
the space children, the joined members, and which servers have members."""

from __future__ import annotations

from typing import Iterable

from homeserver.protocol.events import StateKey
from homeserver.storage.db import Database

# A user id's server name is everything after its first colon.
_SERVER_OF_MEMBER = "substr(state_key, strpos(state_key, ':') + 1)"


class HierarchyStore:
    def __init__(self, db: Database):
        self.db = db

    async def summary_state_ids(self, room_id: str, types: Iterable[str]) -> dict[StateKey, str]:
        """The current state event ids of the given types (state key "") and of every m.space.child."""
        rows = await self.db.fetch(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1"
            " AND ((state_key = '' AND type = ANY($2::text[])) OR type = 'm.space.child')",
            room_id, list(types),
        )
        return {(r["type"], r["state_key"]): r["event_id"] for r in rows}

    async def joined_members(self, room_id: str, server_name: str) -> tuple[int, bool]:
        """(joined members, whether one of them is a user of ``server_name``)."""
        row = await self.db.fetchrow(
            f"SELECT count(*) AS joined, coalesce(bool_or({_SERVER_OF_MEMBER} = $2), false) AS present"
            " FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND membership = 'join'",
            room_id, server_name,
        )
        return row["joined"], row["present"]

    async def server_has_member(self, room_ids: list[str], server_name: str, memberships: list[str]) -> bool:
        """Whether a user of the server has one of the memberships in any of the rooms."""
        return bool(await self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM current_state WHERE room_id = ANY($1::text[])"
            f" AND type = 'm.room.member' AND membership = ANY($3::text[]) AND {_SERVER_OF_MEMBER} = $2)",
            room_ids, server_name, memberships,
        ))

    async def user_joined_any(self, room_ids: list[str], user_id: str) -> bool:
        return bool(await self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM current_state WHERE room_id = ANY($1::text[])"
            " AND type = 'm.room.member' AND state_key = $2 AND membership = 'join')",
            room_ids, user_id,
        ))
