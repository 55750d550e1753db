"""What simplified sliding sync (MSC4186) reads about all of a user's rooms at once.

Every room the user has a membership in, with what the lists sort and filter on
(bump stamp, room type, encryption), so that a request costs a fixed number of
queries before the rooms of its window are computed. The memberships are read at
every request (SyncQueries.memberships, as /sync v3 reads them, with the device's
key counts and the window's membership events); the rest is remembered per room
and read again only for the rooms whose stream moved (an Element X long poll would
otherwise read every room's latest event and create event each time: 11 ms for
500 rooms).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Awaitable, Sequence

from homeserver.storage.cache import LruCache
from homeserver.storage.db import Database
from homeserver.storage.streams import StreamChangeCache
from homeserver.storage.sync_queries import Memberships

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


@dataclasses.dataclass(frozen=True)
class _RoomFacts:
    """A room's bump stamp, type and encryption as of a stream position."""

    position: int
    bump: int | None
    room_type: str | None
    encrypted: bool


class SlidingSyncStore:
    def __init__(self, db: Database, room_changes: StreamChangeCache, cache_size: int = 50_000):
        self.db = db
        self.room_changes = room_changes
        self._facts: LruCache[str, _RoomFacts] = LruCache(cache_size)

    async def user_rooms(
        self, memberships: Memberships, up_to: int, ahead: Awaitable[dict[str, _RoomFacts] | None] | None = None,
        previous: dict[str, UserRoom] | None = None,
    ) -> list[UserRoom]:
        """Every room of the user's memberships, with its facts at ``up_to``: those
        ``ahead`` found (``facts_at`` started earlier; None if it failed), and the others. A room of ``previous`` (the rows
        handed out last time) with the same membership event and facts is handed out
        again as it was. The sender and position of each membership event come from
        the memberships (read ``with_senders``), else from ``previous`` for an event
        unchanged since, else from a read of the events that changed (a room whose
        event is not found is left out, as the join of ``with_senders`` leaves it)."""
        facts = dict((await ahead if ahead is not None else None) or {})
        unknown = [r for r in memberships.rooms if r not in facts]
        if unknown:
            facts.update(await self.facts_at(unknown, up_to))
        previous = previous or {}
        senders = dict(memberships.membership_events)
        new_events = [event_id for room_id, (_, event_id) in memberships.rooms.items()
                      if room_id not in senders and (room_id not in previous
                                                     or previous[room_id].membership_event_id != event_id)]
        found = await self._senders(new_events) if new_events else {}
        out = []
        for room_id, (membership, event_id) in memberships.rooms.items():
            known = facts[room_id]
            before = previous.get(room_id)
            if before is not None and before.membership_event_id == event_id:
                if before.membership == membership and (before.bump_stamp, before.room_type, before.encrypted) == (
                        known.bump, known.room_type, known.encrypted):
                    out.append(before)
                    continue
                senders.setdefault(room_id, (before.membership_sender, before.membership_position))
            sender_position = senders.get(room_id) or found.get(event_id)
            if sender_position is None:
                continue
            sender, position = sender_position
            out.append(UserRoom(
                room_id, membership, event_id, sender, position, known.bump, known.room_type, known.encrypted))
        return out

    async def _senders(self, event_ids: list[str]) -> dict[str, tuple[str, int]]:
        """event id -> (sender, stream position), of these events."""
        rows = await self.db.fetch(
            "SELECT event_id, sender, stream_ordering FROM events WHERE event_id = ANY($1::text[])", event_ids)
        return {r["event_id"]: (r["sender"], r["stream_ordering"]) for r in rows}

    async def facts_at(self, room_ids: Sequence[str], up_to: int) -> dict[str, _RoomFacts]:
        """Each room's facts at ``up_to``: remembered unless the room's stream moved since
        (an event bumps it, a state event sets its encryption); read for the others at once."""
        out: dict[str, _RoomFacts] = {}
        stale = []
        for room_id in room_ids:
            known = self._facts.get(room_id)
            if (known is not None and known.position <= up_to
                    and not self.room_changes.maybe_changed_since(room_id, known.position)):
                out[room_id] = known
            else:
                stale.append(room_id)
        if not stale:
            return out
        rows = await self.db.fetch(
            """
            SELECT r.room_id,
                (SELECT b.stream_ordering FROM events b
                  WHERE b.room_id = r.room_id AND b.type IN (""" + _BUMP_TYPES_SQL + """)
                    AND NOT b.outlier AND b.rejected_reason IS NULL AND b.stream_ordering <= (SELECT $2::bigint)
                  ORDER BY b.stream_ordering DESC LIMIT 1) AS bump,
                (SELECT ce.json FROM current_state cc JOIN events ce ON ce.event_id = cc.event_id
                  WHERE cc.room_id = r.room_id AND cc.type = 'm.room.create' AND cc.state_key = '') AS create_json,
                EXISTS (SELECT 1 FROM current_state ec WHERE ec.room_id = r.room_id
                  AND ec.type = 'm.room.encryption' AND ec.state_key = '') AS encrypted
            FROM unnest((SELECT $1::text[])) AS r (room_id)  -- (a generic plan: see room_reads)
            """,
            stale, up_to,
        )
        for r in rows:
            room_type = None
            if r["create_json"] is not None:
                content = json.loads(r["create_json"]).get("content")
                value = content.get("type") if isinstance(content, dict) else None
                room_type = value if isinstance(value, str) else None
            facts = out[r["room_id"]] = _RoomFacts(up_to, r["bump"], room_type, r["encrypted"])
            self._facts.set(r["room_id"], facts)
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
            "SELECT c.room_id, c.type, c.state_key, c.event_id, c.membership"
            " FROM unnest((SELECT $1::text[])) AS r (room_id) JOIN current_state c ON c.room_id = r.room_id",
            room_ids,
        )
        out: dict[str, dict[tuple[str, str], tuple[str, str | None]]] = {r: {} for r in room_ids}
        for r in rows:
            out[r["room_id"]][(r["type"], r["state_key"])] = (r["event_id"], r["membership"])
        return out
