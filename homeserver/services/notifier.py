"""Wakes waiting /sync long polls when something for their user is committed.

A waiter takes ``token_for(user)`` before it looks for news, and waits on it
only if it found none: a change committed in between has already resolved the
token, so no wake-up is lost.

A change is announced with ``notify_at(stream, position, users)``; its users
are woken only once the stream's current position has reached it. Woken
earlier (while a lower position is still being written), they would read up to
the old current position, find nothing and sleep through the change.

With several processes on one database (services/cluster.py), ``broadcast``
passes each announcement on to the others, which wake their own users once
their view of the stream has reached the position.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Iterable

from homeserver.storage.streams import StreamIdGenerator

# How long a sync waits for this process's streams to reach a token another process gave out.
CATCH_UP_S = 1.5


class Notifier:
    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[None]] = {}
        # (stream, position, users to wake; None: all who wait when it becomes visible)
        self._pending: list[tuple[StreamIdGenerator, int, frozenset[str] | None]] = []
        self._closed = False
        self._waiting = 0  # calls of wait() under way
        self._advance: asyncio.Event | None = None
        # (stream, position, users, room id): tells the other processes (set by the cluster wiring).
        self.broadcast: Callable[[StreamIdGenerator, int, frozenset[str], str | None], None] | None = None

    def watch(self, stream: StreamIdGenerator) -> None:
        stream.add_listener(self._advanced)

    def _advanced(self) -> None:
        self._release_visible()
        if self._advance is not None:
            self._advance.set()
            self._advance = None

    async def catch_up(self, behind: Callable[[], bool], timeout_s: float = CATCH_UP_S) -> bool:
        """Wait until ``behind()`` is false (checked whenever a stream advances) or the timeout
        passes; True if caught up. For a token from another process a little ahead of ours."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while behind():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self._closed:
                return False
            if self._advance is None:
                self._advance = asyncio.Event()
            try:
                await asyncio.wait_for(self._advance.wait(), remaining)
            except asyncio.TimeoutError:
                return not behind()
        return True

    def notify_at(self, stream: StreamIdGenerator, position: int, user_ids: Iterable[str], *,
                  room_id: str | None = None, local_only: bool = False) -> None:
        """Wake ``user_ids`` once ``position`` is visible; ``room_id``: the change is a room's
        (other processes wake their own members of the room)."""
        users = frozenset(user_ids)
        self._pending.append((stream, position, users))
        self._release_visible()
        if self.broadcast is not None and not local_only:
            self.broadcast(stream, position, users, room_id)

    def notify_all_at(self, stream: StreamIdGenerator, position: int) -> None:
        """Wake every waiting user once ``position`` is visible (another process's change whose
        list of users was too long to send): they look, and most sleep again."""
        self._pending.append((stream, position, None))
        self._release_visible()

    def _release_visible(self) -> None:
        if not self._pending:
            return
        waiting = []
        for stream, position, user_ids in self._pending:
            if position <= stream.current():
                self.notify_users(list(self._futures) if user_ids is None else user_ids)
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
        self._waiting += 1
        try:
            await asyncio.wait_for(asyncio.shield(token), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._waiting -= 1

    def waiting_users(self) -> int:
        """Long polls waiting now (a token taken by a sync that has since answered does not count)."""
        return self._waiting
