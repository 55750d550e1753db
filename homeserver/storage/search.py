"""Full-text search over events: the GIN index of migrations/0017_search.sql.

The indexed ``events.search_vector`` is a generated column (of ``event_search_text``), so it is
filled by PostgreSQL in the same insert that writes the event; nothing here runs on the write path.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from homeserver.storage.db import Database

# The event types the index covers, and the content key each is searched by.
SEARCHABLE_TYPES = {"m.room.message": "content.body", "m.room.name": "content.name", "m.room.topic": "content.topic"}

# events.search_vector is a stored generated column; the condition repeats the partial
# index's predicate so that the planner may use the index.
_VECTOR = "e.search_vector"
_INDEX_PREDICATE = "e.search_vector IS NOT NULL"


@dataclasses.dataclass(frozen=True)
class SearchQuery:
    term: str
    room_ids: Sequence[str]
    types: Sequence[str]
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()
    # Senders whose non-state events are left out (the reader ignores them).
    ignored_senders: Sequence[str] = ()
    order_by_rank: bool = True


@dataclasses.dataclass(frozen=True)
class SearchCursor:
    """Where a page ended: results strictly after it in the order come next."""

    stream_ordering: int
    rank: float | None = None  # with order_by rank


@dataclasses.dataclass(frozen=True)
class SearchHit:
    event_id: str
    room_id: str
    stream_ordering: int
    rank: float

    @property
    def cursor(self) -> SearchCursor:
        return SearchCursor(self.stream_ordering, self.rank)


_MATCHES = f"""
    FROM events e, websearch_to_tsquery('simple'::regconfig, $1) AS q
    WHERE {_INDEX_PREDICATE}
      AND {_VECTOR} @@ q
      AND e.room_id = ANY($2::text[])
      AND e.type = ANY($3::text[])
      AND ($4::text[] IS NULL OR e.sender = ANY($4::text[]))
      AND NOT (e.sender = ANY($5::text[]))
      AND NOT (e.state_key IS NULL AND e.sender = ANY($6::text[]))
      AND NOT e.outlier AND e.rejected_reason IS NULL
      -- A redacted event's text is gone for clients: it must not be found by it either.
      AND NOT EXISTS (SELECT 1 FROM redactions red JOIN events r ON r.event_id = red.event_id
                      WHERE red.redacts = e.event_id AND r.room_id = e.room_id)
"""

_PAGE_BY_RANK = f"""
    SELECT event_id, room_id, stream_ordering, rank FROM (
        SELECT e.event_id, e.room_id, e.stream_ordering, ts_rank({_VECTOR}, q) AS rank
        {_MATCHES}
    ) m
    WHERE $7::bigint IS NULL OR (rank, stream_ordering) < ($8::real, $7::bigint)
    ORDER BY rank DESC, stream_ordering DESC
    LIMIT $9
"""

_PAGE_BY_RECENT = f"""
    SELECT e.event_id, e.room_id, e.stream_ordering, ts_rank({_VECTOR}, q) AS rank
    {_MATCHES}
      AND ($7::bigint IS NULL OR e.stream_ordering < $7::bigint)
    ORDER BY e.stream_ordering DESC
    LIMIT $8
"""


class SearchStore:
    def __init__(self, db: Database):
        self.db = db

    async def search(self, query: SearchQuery, after: SearchCursor | None, limit: int) -> list[SearchHit]:
        """The matching events after ``after``, best first (rank) or newest first."""
        sql = _PAGE_BY_RANK if query.order_by_rank else _PAGE_BY_RECENT
        rows = await self.db.fetch(sql, *self._args(query), *self._page_args(query, after, limit))
        return [SearchHit(r["event_id"], r["room_id"], r["stream_ordering"], r["rank"]) for r in rows]

    async def count(self, query: SearchQuery) -> int:
        """How many events match, before history visibility is applied (the spec's count is approximate)."""
        return await self.db.fetchval("SELECT count(*) " + _MATCHES, *self._args(query))

    async def explain(self, query: SearchQuery, limit: int = 10) -> str:
        """The plan of a first page (for the tests and the benchmark: the index must be used)."""
        sql = _PAGE_BY_RANK if query.order_by_rank else _PAGE_BY_RECENT
        rows = await self.db.fetch("EXPLAIN " + sql, *self._args(query), *self._page_args(query, None, limit))
        return "\n".join(r[0] for r in rows)

    @staticmethod
    def _args(query: SearchQuery) -> tuple[Any, ...]:
        return (
            query.term, list(query.room_ids), list(query.types),
            list(query.senders) if query.senders is not None else None,
            list(query.not_senders), list(query.ignored_senders),
        )

    @staticmethod
    def _page_args(query: SearchQuery, after: SearchCursor | None, limit: int) -> tuple[Any, ...]:
        position = after.stream_ordering if after is not None else None
        if not query.order_by_rank:
            return position, limit
        return position, after.rank if after is not None else None, limit
