"""What simplified sliding sync (MSC4186) reads about all of a user's rooms at once.

One query gives every room the user has a membership in, with what the lists
sort and filter on (bump stamp, room type, encryption), so that a request costs
a fixed number of queries before the rooms of its window are computed.
"""

from __future__ import annotations

import dataclasses
import json

from homeserver.storage.db import Database

# Synapse's DEFAULT_BUMP_EVENT_TYPES; the partial index of migration 0016 lists the same.
BUMP_EVENT_TYPES = (
    "m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite",
    "org.matrix.msc3381.poll.start", "m.poll.start", "m.beacon_info",
)

# Written into the SQL rather than passed as a parameter: only then can the planner see
# that the partial index's predicate holds, also in a prepared statement's generic plan.
_BUMP_TYPES_SQL = ", ".join("'" + t + "'" for t in BUMP_EVENT_TYPES)


@dataclasses.dataclass(frozen=True)
class UserRoom:
    room_id: str
    membership: str
    membership_event_id: str
    membership_sender: str
    # Stream position of the user's membership event.
    membership_position: int
    # Latest bumping event at or before the window's end (None: none known, e.g. a remote invite).
    bump_stamp: int | None
    room_type: str | None
    encrypted: bool


class SlidingSyncStore:
    def __init__(self, db: Database):
        self.db = db

    async def rooms_for_user(self, user_id: str, up_to: int) -> list[UserRoom]:
        rows = await self.db.fetch(
            """
            SELECT c.room_id, c.membership, c.event_id, m.sender, m.stream_ordering AS membership_position,
                (SELECT b.stream_ordering FROM events b
                  WHERE b.room_id = c.room_id AND b.type IN (""" + _BUMP_TYPES_SQL + """)
                    AND NOT b.outlier AND b.rejected_reason IS NULL AND b.stream_ordering <= $2
                  ORDER BY b.stream_ordering DESC LIMIT 1) AS bump,
                (SELECT ce.json FROM current_state cc JOIN events ce ON ce.event_id = cc.event_id
                  WHERE cc.room_id = c.room_id AND cc.type = 'm.room.create' AND cc.state_key = '') AS create_json,
                EXISTS (SELECT 1 FROM current_state ec WHERE ec.room_id = c.room_id
                  AND ec.type = 'm.room.encryption' AND ec.state_key = '') AS encrypted
            FROM current_state c JOIN events m ON m.event_id = c.event_id
            WHERE c.type = 'm.room.member' AND c.state_key = $1
            """,
            user_id, up_to,
        )
        out = []
        for r in rows:
            room_type = None
            if r["create_json"] is not None:
                content = json.loads(r["create_json"]).get("content")
                value = content.get("type") if isinstance(content, dict) else None
                room_type = value if isinstance(value, str) else None
            out.append(UserRoom(
                r["room_id"], r["membership"], r["event_id"], r["sender"], r["membership_position"],
                r["bump"], room_type, r["encrypted"],
            ))
        return out

    async def space_children(self, space_ids: list[str]) -> set[str]:
        """Rooms named by a current, non-empty m.space.child event of any of these spaces."""
        rows = await self.db.fetch(
            "SELECT c.state_key, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = ANY($1::text[]) AND c.type = 'm.space.child'",
            space_ids,
        )
        children = set()
        for r in rows:
            content = json.loads(r["json"]).get("content")
            # Spec: a child event without a via list is no child (it was removed).
            if isinstance(content, dict) and isinstance(content.get("via"), list) and content["via"]:
                children.add(r["state_key"])
        return children

    async def current_state_of(self, room_ids: list[str]) -> dict[str, dict[tuple[str, str], tuple[str, str | None]]]:
        """room id -> (type, state key) -> (event id, membership), the current state of many rooms at once."""
        rows = await self.db.fetch(
            "SELECT room_id, type, state_key, event_id, membership FROM current_state WHERE room_id = ANY($1::text[])",
            room_ids,
        )
        out: dict[str, dict[tuple[str, str], tuple[str, str | None]]] = {r: {} for r in room_ids}
        for r in rows:
            out[r["room_id"]][(r["type"], r["state_key"])] = (r["event_id"], r["membership"])
        return out
