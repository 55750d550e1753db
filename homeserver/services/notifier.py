"""Wakes waiting /sync long polls when something for their user is committed.

A waiter takes ``token_for(user)`` before it looks for news, and waits on it
only if it found none: a change committed in between has already resolved the
token, so no wake-up is lost.

A change is announced with ``notify_at(stream, position, users)``; its users
are woken only once the stream's current position has reached it. Woken
earlier (while a lower position is still being written), they would read up to
the old current position, find nothing and sleep through the change.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

from homeserver.storage.streams import StreamIdGenerator


class Notifier:
    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[None]] = {}
        self._pending: list[tuple[StreamIdGenerator, int, frozenset[str]]] = []
        self._closed = False

    def watch(self, stream: StreamIdGenerator) -> None:
        stream.add_listener(self._release_visible)

    def notify_at(self, stream: StreamIdGenerator, position: int, user_ids: Iterable[str]) -> None:
        self._pending.append((stream, position, frozenset(user_ids)))
        self._release_visible()

    def _release_visible(self) -> None:
        if not self._pending:
            return
        waiting = []
        for stream, position, user_ids in self._pending:
            if position <= stream.current():
                self.notify_users(user_ids)
            else:
                waiting.append((stream, position, user_ids))
        self._pending = waiting

    def token_for(self, user_id: str) -> asyncio.Future[None]:
        future = self._futures.get(user_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._futures[user_id] = future
        return future

    def notify_users(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            future = self._futures.pop(user_id, None)
            if future is not None and not future.done():
                future.set_result(None)

    def close(self) -> None:
        """Shutting down: end every long poll now rather than at its timeout (clients
        reconnect), so that shutdown does not wait for them, also for clients long gone."""
        self._closed = True
        self.notify_users(list(self._futures))

    async def wait(self, token: asyncio.Future[None], timeout_s: float) -> bool:
        """Wait until the token resolves or the timeout passes; True if woken."""
        if token.done():
            return True
        if self._closed:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(token), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    def waiting_users(self) -> int:
        return sum(1 for f in self._futures.values() if not f.done())
