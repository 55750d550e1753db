"""Event relationships: the event_relations table, written by EventStore.insert_event.

Positions are stream orderings, the order /messages pages in.
"""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database

# Spec (relations API, recurse): "Homeservers SHOULD traverse at least 3 levels".
MAX_RECURSION_DEPTH = 3


@dataclasses.dataclass(frozen=True)
class ThreadSummary:
    latest_event_id: str
    count: int
    user_participated: bool


@dataclasses.dataclass(frozen=True)
class Aggregations:
    """What bundled aggregations need of a set of parents, from one query."""

    threads: dict[str, ThreadSummary]
    # Candidate edits per parent (same sender and type, not state), most recent first.
    edits: dict[str, list[str]]
    references: dict[str, list[str]]


class RelationStore:
    def __init__(self, db: Database):
        self.db = db

    async def children(
        self,
        room_id: str,
        parent_id: str,
        rel_type: str | None,
        event_type: str | None,
        after: int,
        up_to: int,
        limit: int,
        newest_first: bool,
        recurse: bool,
    ) -> list[str]:
        """Ids of the events relating to a parent with after < stream_ordering <= up_to.

        With ``recurse``, children of children too, to MAX_RECURSION_DEPTH levels; the
        filters apply at every level, so a match reached only through a non-matching
        event is left out (spec, "Relationships API").
        """
        rows = await self.db.fetch(
            """
            WITH RECURSIVE related (event_id, depth) AS (
                SELECT r.event_id, 1 FROM event_relations r JOIN events e USING (event_id)
                WHERE r.relates_to_id = $2 AND r.room_id = $1
                    AND ($3::text IS NULL OR r.rel_type = $3) AND ($4::text IS NULL OR e.type = $4)
                UNION
                SELECT r.event_id, related.depth + 1
                FROM related JOIN event_relations r ON r.relates_to_id = related.event_id
                JOIN events e ON e.event_id = r.event_id
                WHERE $9 AND related.depth < $8 AND r.room_id = $1
                    AND ($3::text IS NULL OR r.rel_type = $3) AND ($4::text IS NULL OR e.type = $4)
            )
            SELECT DISTINCT e.event_id, e.stream_ordering FROM related JOIN events e USING (event_id)
            WHERE e.stream_ordering > $5 AND e.stream_ordering <= $6
                AND NOT e.outlier AND e.rejected_reason IS NULL
            ORDER BY e.stream_ordering """ + ("DESC" if newest_first else "ASC") + """ LIMIT $7
            """,
            room_id, parent_id, rel_type, event_type, after, up_to, limit, MAX_RECURSION_DEPTH, recurse,
        )
        return [row["event_id"] for row in rows]

    async def has_annotation(self, parent_id: str, event_type: str, key: str, sender: str) -> bool:
        """Whether the sender already reacted to the parent with this key (and event type)."""
        return bool(await self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM event_relations r JOIN events e USING (event_id)"
            " WHERE r.relates_to_id = $1 AND r.rel_type = 'm.annotation' AND r.aggregation_key = $3"
            " AND e.type = $2 AND e.sender = $4 AND e.rejected_reason IS NULL)",
            parent_id, event_type, key, sender,
        ))

    async def is_parent(self, event_id: str) -> bool:
        return bool(await self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM event_relations WHERE relates_to_id = $1)", event_id
        ))

    async def aggregations(self, parent_ids: list[str], user_id: str) -> Aggregations:
        """Thread summaries, edit candidates and references of the parents, in one statement.

        Only children in their parent's room count (spec: both events must be in the same room),
        and for a user who is no longer joined only those up to their leaving, as /messages
        serves them: a summary must not show what was said after someone left.
        """
        rows = await self.db.fetch(
            """
            WITH rel AS (
                SELECT r.relates_to_id, r.rel_type, e.event_id, e.sender, e.type, e.state_key,
                    e.origin_server_ts, e.stream_ordering, p.sender AS parent_sender, p.type AS parent_type
                FROM event_relations r
                JOIN events e ON e.event_id = r.event_id
                JOIN events p ON p.event_id = r.relates_to_id AND p.room_id = r.room_id
                LEFT JOIN current_state m ON m.room_id = r.room_id AND m.type = 'm.room.member'
                    AND m.state_key = $2
                LEFT JOIN events leaving ON leaving.event_id = m.event_id
                WHERE r.relates_to_id = ANY($1::text[])
                    AND r.rel_type IN ('m.thread', 'm.replace', 'm.reference')
                    AND NOT e.outlier AND e.rejected_reason IS NULL
                    AND (m.membership = 'join' OR e.stream_ordering <= leaving.stream_ordering)
            )
            SELECT 'm.thread' AS rel_type, relates_to_id,
                array_agg(event_id ORDER BY stream_ordering DESC) AS ids,
                count(*) AS count, bool_or(sender = $2) AS participated
            FROM rel WHERE rel_type = 'm.thread' GROUP BY relates_to_id
            UNION ALL
            SELECT 'm.replace', relates_to_id,
                array_agg(event_id ORDER BY origin_server_ts DESC, event_id DESC), count(*), NULL
            FROM rel WHERE rel_type = 'm.replace'
                AND sender = parent_sender AND type = parent_type AND state_key IS NULL
            GROUP BY relates_to_id
            UNION ALL
            SELECT 'm.reference', relates_to_id, array_agg(event_id ORDER BY stream_ordering), count(*), NULL
            FROM rel WHERE rel_type = 'm.reference' GROUP BY relates_to_id
            """,
            parent_ids, user_id,
        )
        threads: dict[str, ThreadSummary] = {}
        edits: dict[str, list[str]] = {}
        references: dict[str, list[str]] = {}
        for row in rows:
            parent = row["relates_to_id"]
            if row["rel_type"] == "m.thread":
                threads[parent] = ThreadSummary(row["ids"][0], row["count"], row["participated"])
            elif row["rel_type"] == "m.replace":
                edits[parent] = list(row["ids"])
            else:
                references[parent] = list(row["ids"])
        return Aggregations(threads, edits, references)

    async def thread_roots(
        self, room_id: str, up_to: int, ceiling: int, limit: int, participant: str | None
    ) -> list[tuple[str, int]]:
        """(root id, position of its latest thread event) of the room's threads, latest first.

        Only threads whose latest event (as of ``ceiling``) is at or before ``up_to``;
        with ``participant``, only threads that user started or wrote in.
        """
        rows = await self.db.fetch(
            """
            SELECT r.relates_to_id, max(e.stream_ordering) AS latest
            FROM event_relations r
            JOIN events e ON e.event_id = r.event_id
            JOIN events p ON p.event_id = r.relates_to_id AND p.room_id = r.room_id
            WHERE r.room_id = $1 AND r.rel_type = 'm.thread' AND e.stream_ordering <= $3
                AND NOT e.outlier AND e.rejected_reason IS NULL
            GROUP BY r.relates_to_id, p.sender
            HAVING max(e.stream_ordering) <= $2
                AND ($5::text IS NULL OR p.sender = $5 OR bool_or(e.sender = $5))
            ORDER BY latest DESC LIMIT $4
            """,
            room_id, up_to, ceiling, limit, participant,
        )
        return [(row["relates_to_id"], row["latest"]) for row in rows]
