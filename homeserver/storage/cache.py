"""A small bounded LRU, so caches cannot grow the process past a 1 GB VPS."""

from __future__ import annotations

from collections import OrderedDict
from typing import Awaitable, Callable, Generic, Hashable, Iterable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    def __init__(self, max_size: int):
        self.max_size = max_size
        self._data: OrderedDict[K, V] = OrderedDict()
        # Read by the metrics (homeserver/metrics.py): two integer additions per lookup.
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return value

    def set(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def drop_where(self, predicate) -> None:
        """Drop every entry whose value ``predicate`` accepts (a scan: for rare invalidations)."""
        for key in [k for k, v in self._data.items() if predicate(v)]:
            del self._data[key]

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class LoadingCache(Generic[K, V]):
    """An LruCache filled by a loader, whose entries other code may declare stale.

    A load that raced with ``forget`` is returned but not kept: the generation
    moved while it read, so what it read may be the value from before the change.
    """

    def __init__(self, max_size: int):
        self._entries: LruCache[K, V] = LruCache(max_size)
        self._generation = 0

    async def get(self, key: K, load: Callable[[K], Awaitable[V]]) -> V:
        cached = self._entries.get(key)
        if cached is not None:
            return cached
        generation = self._generation
        value = await load(key)
        if generation == self._generation:
            self._entries.set(key, value)
        return value

    def peek(self, key: K) -> V | None:
        """The cached value, or None: no load."""
        return self._entries.get(key)

    def forget(self, keys: Iterable[K] | None = None) -> None:
        """These keys changed (``None``: any may have)."""
        self._generation += 1
        if keys is None:
            self._entries.clear()
        for key in keys or ():
            self._entries.pop(key)
