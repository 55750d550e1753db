"""Stream positions: every kind of change /sync reports has one.

Positions are handed out in this process, so that "current" never runs ahead
of a position still being written: a reader that sees position N knows every
position up to N is committed (or rolled back). One process owns the writing
of each stream; several processes sharing a database would need the
allocation to move into PostgreSQL (see docs/architecture.md).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from homeserver.storage.db import Database


class StreamIdGenerator:
    def __init__(self, start: int):
        self._last_allocated = start
        self._in_flight: set[int] = set()
        self._current = start
        self._listeners: list[Callable[[], None]] = []

    @classmethod
    async def load(cls, db: Database, table: str, column: str) -> "StreamIdGenerator":
        value = await db.fetchval(f"SELECT COALESCE(max({column}), 0) FROM {table}")
        return cls(value)

    @contextlib.contextmanager
    def allocate(self) -> Iterator[int]:
        """Hand out the next position; it becomes visible when the block exits.

        Exit the block only after the transaction that wrote the position has
        committed or rolled back.
        """
        self._last_allocated += 1
        position = self._last_allocated
        self._in_flight.add(position)
        try:
            yield position
        finally:
            self._in_flight.discard(position)
            previous = self._current
            self._current = (min(self._in_flight) - 1) if self._in_flight else self._last_allocated
            if self._current != previous:
                for listener in self._listeners:
                    listener()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever current() advances."""
        self._listeners.append(listener)

    def current(self) -> int:
        """The highest position below which nothing is still being written."""
        return self._current


class StreamChangeCache:
    """Remembers the last position at which each entity (a room) changed.

    Lets an incremental /sync skip rooms with nothing new without asking the
    database. Positions older than the cache's start are unknown: "maybe".
    """

    def __init__(self, start: int, max_entities: int = 100_000):
        self._earliest_known = start
        self._last_change: dict[str, int] = {}
        self.max_entities = max_entities

    def record(self, entity: str, position: int) -> None:
        self._last_change[entity] = position
        if len(self._last_change) > self.max_entities:
            # Drop the oldest half and raise the horizon accordingly.
            ordered = sorted(self._last_change.items(), key=lambda item: item[1])
            cut = len(ordered) // 2
            self._earliest_known = ordered[cut - 1][1]
            self._last_change = dict(ordered[cut:])

    def maybe_changed_since(self, entity: str, position: int) -> bool:
        if position < self._earliest_known:
            return True
        return self._last_change.get(entity, 0) > position
