"""Typing notifications: ephemeral, kept in memory only, with their own position.

Each change of a room's typers (start, stop, expiry) takes the next typing
position; /sync sends a room's m.typing event (the full list of typers, which
replaces the client's) when the room changed after the token's position.
With several processes (services/cluster.py) the positions come from a shared
sequence and every change is told to the others, which keep a copy of who
types where: a token means the same on every process. The process where a
user typed ends their typing at its timeout; the copies end it a little
later themselves, should that process be gone.
A restart forgets everyone typing.
Spec: https://spec.matrix.org/v1.19/client-server-api/#typing-notifications
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Awaitable, Callable

from homeserver.errors import forbidden
from homeserver.services.notifier import Notifier
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamChangeCache, StreamIdGenerator

# Clients re-send their typing state every few seconds (the spec suggests at most
# 20-30 s); a longer timeout would only keep a vanished typer on screen.
MAX_TIMEOUT_MS = 30_000
DEFAULT_TIMEOUT_MS = 30_000
# A copy of another process's typer ends this much after its timeout, if not told before.
REMOTE_GRACE_S = 5.0


class TypingService:
    def __init__(self, state: StateStore, notifier: Notifier, stream: StreamIdGenerator | None = None,
                 members: Callable[[str], Awaitable[Any]] | None = None):
        self.state = state
        self.notifier = notifier
        self.stream = stream or StreamIdGenerator(0, "typing")
        notifier.watch(self.stream)
        # The joined members of a room (the pipeline's cache, when wired).
        self._members = members or (lambda room_id: self.state.get_members(room_id, "join"))
        # room id -> user id -> the timer that stops their typing.
        self._typing: dict[str, dict[str, asyncio.TimerHandle]] = {}
        self._changes = StreamChangeCache(self.stream.current())
        self._wake_tasks: set[asyncio.Task[None]] = set()
        # Told of every typing change (user, room, typing, timeout): federation sends them on.
        self.listeners: list[Callable[[str, str, bool, int], Awaitable[None]]] = []
        # Tells the other processes of a change (room, user, typing, timeout ms, position); set by the wiring.
        self.broadcast: Callable[[str, str, bool, int, int], None] | None = None

    def position(self) -> int:
        return self.stream.current()

    async def set_typing(self, user_id: str, room_id: str, typing: bool, timeout_ms: int | None) -> None:
        """PUT /rooms/{roomId}/typing/{userId}, for the requester themself."""
        current = await self.state.get_membership(room_id, user_id)
        if current is None or current[0] != "join":
            raise forbidden("You are not joined to this room")
        timeout_s = min(DEFAULT_TIMEOUT_MS if timeout_ms is None else timeout_ms, MAX_TIMEOUT_MS) / 1000
        was_typing = self._set(room_id, user_id, typing, timeout_s)
        # Renewing a typing user's timeout changes nothing anyone sees (but the others' timers).
        if was_typing != typing:
            await self._changed(room_id, user_id, typing, timeout_s)
        elif typing and self.broadcast is not None:
            self.broadcast(room_id, user_id, True, int(timeout_s * 1000), 0)
        for listener in self.listeners:
            await listener(user_id, room_id, typing, int(timeout_s * 1000) if typing else 0)

    def _set(self, room_id: str, user_id: str, typing: bool, timeout_s: float, remote: bool = False) -> bool:
        """Start or stop a typer here; whether they were typing before."""
        typers = self._typing.setdefault(room_id, {})
        previous = typers.pop(user_id, None)
        if previous is not None:
            previous.cancel()
        if typing:
            delay = timeout_s + (REMOTE_GRACE_S if remote else 0)
            typers[user_id] = asyncio.get_running_loop().call_later(delay, self._stopped, room_id, user_id)
        elif not typers:
            del self._typing[room_id]
        return previous is not None

    def remote_change(self, room_id: str, user_id: str, typing: bool, timeout_ms: int, position: int) -> None:
        """Another process's change (position 0: a renewed timeout only); the stream moves after."""
        was_typing = self._set(room_id, user_id, typing, timeout_ms / 1000, remote=True)
        if position and was_typing != typing:
            self._changes.record(room_id, position)
            self._spawn(self._wake(room_id, position))

    def tell_everyone_typing(self) -> None:
        """A process joined the cluster: it learns who types now (timers as they stand)."""
        if self.broadcast is None:
            return
        now = asyncio.get_running_loop().time()
        for room_id, typers in self._typing.items():
            for user_id, handle in typers.items():
                self.broadcast(room_id, user_id, True, max(0, int((handle.when() - now) * 1000)), 0)

    def for_sync(self, room_ids: Sequence[str], after: int | None) -> dict[str, dict[str, Any]]:
        """room id -> its m.typing event, for the rooms whose typers changed after
        position ``after``; with no position, for the rooms where someone types."""
        out: dict[str, dict[str, Any]] = {}
        if after is not None and after >= self.stream.current():
            return out
        for room_id in room_ids:
            typers = self._typing.get(room_id, {})
            if (typers if after is None else self._changes.maybe_changed_since(room_id, after)):
                out[room_id] = {"type": "m.typing", "content": {"user_ids": sorted(typers)}}
        return out

    def user_left(self, room_id: str, user_id: str) -> None:
        """A member who left (or was kicked or banned) stops typing at once."""
        handle = self._typing.get(room_id, {}).get(user_id)
        if handle is not None:
            handle.cancel()
            self._stopped(room_id, user_id)

    def _stopped(self, room_id: str, user_id: str) -> None:
        typers = self._typing.get(room_id, {})
        typers.pop(user_id, None)
        if not typers:
            self._typing.pop(room_id, None)
        self._spawn(self._changed(room_id, user_id, False, 0))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._wake_tasks.add(task)
        task.add_done_callback(self._wake_tasks.discard)

    async def _changed(self, room_id: str, user_id: str, typing: bool, timeout_s: float) -> None:
        async with self.stream.allocate() as position:
            self._changes.record(room_id, position)
            if self.broadcast is not None:
                self.broadcast(room_id, user_id, typing, int(timeout_s * 1000), position)
        await self._wake(room_id, position)

    async def _wake(self, room_id: str, position: int) -> None:
        # No write to wait for: the room's members see it once the position is current.
        members = await self._members(room_id)
        self.notifier.notify_at(self.stream, position, members, local_only=True)
