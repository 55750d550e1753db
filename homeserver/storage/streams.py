"""Stream positions: every kind of change /sync reports has one.

Positions come from a PostgreSQL sequence per stream, so that several
processes sharing a database hand out one order (without a database, as in
unit tests, from a counter in memory). ``current()`` is the highest position
below which nothing is still being written, by this process or any other: a
reader that sees position N knows every position up to N is committed or
rolled back, so it never skips an event that commits late.

How a process knows that (the idea of Synapse's MultiWriterIdGenerator):

- Every writer tells the others, after commit or rollback, which positions it
  finished (services/cluster.py carries it over NOTIFY). ``current`` advances
  through every position known to be finished, one after the other.
- A position nobody will announce (a process killed mid-write, a lost
  notification, a nextval whose answer was lost) would stop that forever, so
  each process also publishes its *bound*: nothing of its own at or below it
  is unfinished. That is its lowest position in flight minus one, or, when it
  has nothing in flight, the highest position it knows finished (anything it
  allocates later comes after it in the sequence). ``current`` may also jump
  to the lowest bound of all live processes; a dead one is dropped.
- While an allocation is on its way from the sequence, the bound stays where
  it was when the allocation was asked for: the value could be any one above it.
- Alone on the database (``may_reserve``), a process takes positions from the
  sequence a block at a time, saving a round trip per write; when another
  process arrives, the positions left in the block are released (announced
  as finished, never written) before the newcomer may count on its view.
"""

from __future__ import annotations

import heapq
import time
from typing import Any, Callable, Iterable

from homeserver.storage.db import Database
from homeserver.storage.stream_positions import last_position, next_position, next_positions

# Positions taken at once from the sequence while this process is alone.
RESERVE_BLOCK = 32

# (stream name, finished position or None, own bound): the cluster announces it.
Announcer = Callable[[str, "int | None", int], None]


class _Allocation:
    """``async with stream.allocate() as position`` (a ``with`` for a stream in memory only)."""

    def __init__(self, stream: "StreamIdGenerator", conn: Any, fetch: Any = None, announced: bool = False):
        self._stream = stream
        self._conn = conn
        self._fetch = fetch
        self._announced = announced
        self.position: int | None = None
        self.extra: Any = None  # what ``fetch`` read with the position
        self._finished = False

    async def __aenter__(self) -> int:
        if self.position is None:  # entered once; a second entry only ends it at its exit
            if self._fetch is not None:
                self.position, self.extra = await self._stream._take(self._conn, self._fetch)
            else:
                self.position = await self._stream._take(self._conn)
        return self.position

    async def __aexit__(self, *exc: Any) -> None:
        if self.position is not None and not self._finished:
            self._finished = True
            self._stream._finish(self.position, announce=not self._announced)

    def announced_by_write(self) -> None:
        """The write of the position, committed, told the other processes it is finished
        (``allocate``'s ``announced``, learnt after the allocation was made)."""
        self._announced = True

    def __enter__(self) -> int:
        if self._stream.sequence is not None:
            raise RuntimeError("a stream backed by a sequence is allocated with `async with`")
        self.position = self._stream._take_in_memory()
        return self.position

    def __exit__(self, *exc: Any) -> None:
        if self.position is not None:
            self._stream._finish(self.position)


class StreamIdGenerator:
    def __init__(self, start: int, name: str = "stream", *, db: Database | None = None,
                 sequence: str | None = None):
        self.name = name
        self.db = db
        self.sequence = sequence
        self._last_allocated = start  # memory only
        self._current = start
        # Finished positions above current (ours and others'), waiting for the gaps below.
        self._finished: list[int] = []
        self._known_max = start
        self._in_flight: set[int] = set()
        self._pending = 0
        self._pending_floor = start
        self._peer_bounds: dict[str, int] = {}
        self._listeners: list[Callable[[], None]] = []
        self.announcer: Announcer | None = None
        # Whether positions may be taken from the sequence a block at a time (alone: the cluster says).
        self.may_reserve: Callable[[], bool] = lambda: False
        self._reserved: list[int] = []  # ascending, unused
        # Called with the new current when it moved over positions never announced finished.
        self.on_jump: Callable[[int], None] | None = None
        # When positions above current started waiting for one below (None: nothing waits).
        self.waiting_since: float | None = None
        self._starting = False

    @classmethod
    async def load(cls, db: Database, table: str, column: str) -> "StreamIdGenerator":
        """A stream in memory starting at the table's highest position (one process only)."""
        value = await db.fetchval(f"SELECT COALESCE(max({column}), 0) FROM {table}")
        return cls(value)

    @classmethod
    async def from_sequence(cls, db: Database, name: str, sequence: str) -> "StreamIdGenerator":
        """A stream whose positions come from ``sequence``; its start is the sequence's value,
        lowered by the cluster to the bounds of the other processes at start."""
        return cls(await last_position(db, sequence), name, db=db, sequence=sequence)

    def allocate(self, conn: Any = None, fetch: Any = None, announced: bool = False) -> _Allocation:
        """Hand out the next position; it becomes visible when the block exits.

        Exit the block only after the transaction that wrote the position has
        committed or rolled back. ``conn``: where to ask the sequence (default the pool).
        ``fetch``: a coroutine function returning (position from our sequence, anything
        else read in the same statement), to save a round trip (its answer: ``.extra``);
        it may be the write itself, committed, and take no position (None) if it wrote nothing.
        ``announced``: that write also told the other processes the position is finished
        (with a bound no higher than ``own_bound()`` before it), so it is not told again.
        """
        return _Allocation(self, conn, fetch, announced)

    async def _take(self, conn: Any, fetch: Any = None) -> Any:
        if fetch is not None:
            if self._pending == 0:
                self._pending_floor = self.own_bound()
            self._pending += 1
            try:
                position, extra = await fetch()
            finally:
                self._pending -= 1
            if position is None:  # the write the position was for did not happen: none taken
                self._recompute()
                return None, extra
            self._in_flight.add(position)
            self._recompute()
            return position, extra
        if self.sequence is None:
            return self._take_in_memory()
        if self._reserved and self.may_reserve():
            position = self._reserved.pop(0)
            self._in_flight.add(position)
            return position
        if self._pending == 0:
            self._pending_floor = self.own_bound()
        self._pending += 1
        try:
            if self.may_reserve():
                block = await next_positions(self.db.pool, self.sequence, RESERVE_BLOCK)
                position, rest = block[0], block[1:]
                self._reserved = sorted(self._reserved + rest)
            else:
                position = await next_position(conn if conn is not None else self.db.pool, self.sequence)
        finally:
            self._pending -= 1
        self._in_flight.add(position)
        self._recompute()
        return position

    def release_reserved(self) -> None:
        """Another process is here: the positions of our block never written are finished."""
        released, self._reserved = self._reserved, []
        for position in released:
            self._finish(position)

    def _take_in_memory(self) -> int:
        self._last_allocated = max(self._last_allocated, self._known_max) + 1
        position = self._last_allocated
        self._in_flight.add(position)
        return position

    def _finish(self, position: int, announce: bool = True) -> None:
        self._in_flight.discard(position)
        self._known_max = max(self._known_max, position)
        if position > self._current:
            heapq.heappush(self._finished, position)
        self._recompute()
        if announce and self.announcer is not None:
            self.announcer(self.name, position, self.own_bound())

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever current() advances."""
        self._listeners.append(listener)

    def current(self) -> int:
        """The highest position below which nothing is still being written."""
        return self._current

    # What the cluster tells this stream and asks of it

    def own_bound(self) -> int:
        """Nothing this process allocated at or below this position is unfinished."""
        bound = (min(self._in_flight) - 1) if self._in_flight else max(self._known_max, self._current)
        if self._reserved:
            bound = min(bound, self._reserved[0] - 1)
        if self._pending:
            bound = min(bound, self._pending_floor)
        return bound

    def finished_above_bound(self) -> list[int]:
        """Positions finished above our own bound (another process starting needs them)."""
        bound = self.own_bound()
        return sorted(p for p in self._finished if p > bound)

    def hold_start(self) -> None:
        """Starting: the others' bounds are still to come; nothing moves until ``begin``."""
        self._starting = True

    def begin(self) -> None:
        """The others' bounds are in: start at the lowest (never above the sequence's value)."""
        self._starting = False
        for bound in self._peer_bounds.values():
            self._current = min(self._current, bound)
        self._recompute()

    def add_peer(self, instance: str, bound: int) -> None:
        """A process that may write: current no longer jumps past its bound."""
        self._peer_bounds[instance] = max(bound, self._peer_bounds.get(instance, bound))
        self._recompute()

    def remote_finished(self, instance: str, positions: list[int], bound: int | None) -> None:
        """Another process finished ``positions``; nothing of its own at or below ``bound`` is unfinished."""
        for position in positions:
            self._known_max = max(self._known_max, position)
            if position > self._current or self._starting:
                heapq.heappush(self._finished, position)
        if bound is not None:
            self._peer_bounds[instance] = max(bound, self._peer_bounds.get(instance, bound))
        self._recompute()

    def drop_peer(self, instance: str) -> None:
        """The process is gone (all its connections closed): its unfinished positions never will be."""
        if self._peer_bounds.pop(instance, None) is not None:
            self._recompute()

    def peers(self) -> set[str]:
        return set(self._peer_bounds)

    def _recompute(self) -> None:
        if self._starting:
            return
        bound = self.own_bound()
        for peer_bound in self._peer_bounds.values():
            bound = min(bound, peer_bound)
        new = max(self._current, bound)
        if new > self._current and self.on_jump is not None:
            # Moving by the bounds alone over positions nobody announced (a dead process's, a
            # lost notification): what changed there is unknown to the caches that listen.
            announced = {p for p in self._finished if p <= new}
            if len(announced) < new - self._current:
                self.on_jump(new)
        finished = self._finished
        while finished and finished[0] <= new + 1:
            position = heapq.heappop(finished)
            if position == new + 1:
                new = position
        self.waiting_since = (self.waiting_since or time.monotonic()) if finished else None
        if new != self._current:
            self._current = new
            for listener in self._listeners:
                listener()


class OutlierPositions:
    """Positions for outliers and backfilled events, below every live position, counting down.

    From the descending sequence events_outlier_seq (shared by all processes); without a
    database, from a counter starting below ``lowest``.
    """

    def __init__(self, db: Database | None, sequence: str | None, lowest: int = 0):
        self.db = db
        self.sequence = sequence
        self._next = min(0, lowest) - 1

    async def next(self) -> int:
        if self.sequence is not None and self.db is not None:
            return await next_position(self.db.pool, self.sequence)
        position, self._next = self._next, self._next - 1
        return position


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
        if position <= self._last_change.get(entity, 0):
            return  # another process's older change arriving after a newer one
        self._last_change[entity] = position
        if len(self._last_change) > self.max_entities:
            # Drop the oldest half and raise the horizon accordingly.
            ordered = sorted(self._last_change.items(), key=lambda item: item[1])
            cut = len(ordered) // 2
            self._earliest_known = ordered[cut - 1][1]
            self._last_change = dict(ordered[cut:])

    def forget_before(self, position: int) -> None:
        """Changes up to ``position`` may be missing (another process's, never told):
        a token older than it is answered "maybe" from now on."""
        self._earliest_known = max(self._earliest_known, position)

    def maybe_changed_since(self, entity: str, position: int) -> bool:
        if position < self._earliest_known:
            return True
        return self._last_change.get(entity, 0) > position

    def changed_among(self, entities: Iterable[str], position: int) -> list[str]:
        """Those of ``entities`` that maybe changed since ``position``, in their order:
        maybe_changed_since of each in one call (a /sync asks it of every room of the user)."""
        if position < self._earliest_known:
            return list(entities)
        last_change = self._last_change.get
        return [e for e in entities if last_change(e, 0) > position]
