"""Message retention: which rooms have a policy, and deleting a room's old messages.

Only non-state events are purged. State events stay, current or not: state groups
name them, the auth rules of later events point at them, and a room without its
state would not work. The room's newest event and its forward extremities stay too,
so new events still have their prev_events and depth.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.db import Database

# Rows keyed by an event id that go with a purged event (event_relations also loses
# the relations pointing at it; receipts and reports keep the id they recorded).
_WITH_THE_EVENTS = (
    "DELETE FROM event_edges WHERE event_id = ANY($1::text[])",
    "DELETE FROM event_auth WHERE event_id = ANY($1::text[])",
    "DELETE FROM redactions WHERE event_id = ANY($1::text[]) OR redacts = ANY($1::text[])",
    "DELETE FROM event_txn_ids WHERE event_id = ANY($1::text[])",
    "DELETE FROM event_relations WHERE event_id = ANY($1::text[]) OR relates_to_id = ANY($1::text[])",
    "DELETE FROM federation_pdu_queue WHERE event_id = ANY($1::text[])",
)

# Candidates: old accepted messages, not the room's newest event, not a forward
# extremity, and not a redaction of a (kept) state event, which would otherwise
# come back unredacted. $4 (optional): only before this stream position; $5 (optional):
# a server name whose users' events are kept.
_CANDIDATES = """
SELECT e.event_id, e.stream_ordering FROM events e
WHERE e.room_id = $1 AND e.origin_server_ts < $2 AND e.state_key IS NULL AND NOT e.outlier
  AND ($4::bigint IS NULL OR e.stream_ordering < $4)
  AND ($5::text IS NULL OR substr(e.sender, strpos(e.sender, ':') + 1) <> $5)
  AND e.stream_ordering < (SELECT max(stream_ordering) FROM events WHERE room_id = $1 AND NOT outlier)
  AND NOT EXISTS (SELECT 1 FROM forward_extremities f WHERE f.room_id = $1 AND f.event_id = e.event_id)
  AND NOT EXISTS (SELECT 1 FROM redactions red JOIN events t ON t.event_id = red.redacts
                  WHERE red.event_id = e.event_id AND t.state_key IS NOT NULL)
ORDER BY e.stream_ordering
LIMIT $3
"""


class RetentionStore:
    def __init__(self, db: Database):
        self.db = db

    async def room_policies(self) -> dict[str, dict[str, Any]]:
        """room id -> content of its current m.room.retention state event."""
        rows = await self.db.fetch(
            "SELECT c.room_id, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.retention' AND c.state_key = ''"
        )
        out = {}
        for row in rows:
            content = json.loads(row["json"]).get("content")
            out[row["room_id"]] = content if isinstance(content, dict) else {}
        return out

    async def room_ids(self) -> list[str]:
        return [r["room_id"] for r in await self.db.fetch("SELECT room_id FROM rooms ORDER BY room_id")]

    async def purge_messages_before(
        self, room_id: str, before_ts: int, limit: int, *, before_stream_ordering: int | None = None,
        keep_server: str | None = None,
    ) -> list[str]:
        """Delete up to ``limit`` of the room's oldest messages sent before the time, with the
        rows that hang on them, in one transaction; return their ids.

        The admin's history purge narrows it: only events before a stream position (those
        before an event), and none sent by users of ``keep_server`` (the local server's
        events may be the only copies there are)."""
        async with self.db.transaction() as conn:
            rows = await conn.fetch(_CANDIDATES, room_id, before_ts, limit, before_stream_ordering, keep_server)
            if not rows:
                return []
            ids = [r["event_id"] for r in rows]
            for statement in _WITH_THE_EVENTS:
                await conn.execute(statement, ids)
            await conn.execute(
                "DELETE FROM event_push_actions WHERE room_id = $1 AND stream_ordering = ANY($2::bigint[])",
                room_id, [r["stream_ordering"] for r in rows],
            )
            await conn.execute("DELETE FROM events WHERE event_id = ANY($1::text[])", ids)
        return ids

    async def message_count_before(self, room_id: str, before_ts: int) -> int:
        """Non-state events of the room sent before the time (for tests and the log)."""
        return await self.db.fetchval(
            "SELECT count(*) FROM events WHERE room_id = $1 AND origin_server_ts < $2 AND state_key IS NULL",
            room_id, before_ts,
        )
