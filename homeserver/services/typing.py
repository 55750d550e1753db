"""Typing notifications: ephemeral, kept in memory only, with their own position.

Each change of a room's typers (start, stop, expiry) takes the next typing
position; /sync sends a room's m.typing event (the full list of typers, which
replaces the client's) when the room changed after the token's position.
A restart forgets everyone typing and starts the positions again at 0: tokens
from before are capped to the current position by SyncService.
Spec: https://spec.matrix.org/v1.19/client-server-api/#typing-notifications
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Awaitable, Callable

from homeserver.errors import forbidden
from homeserver.services.notifier import Notifier
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamChangeCache

# Clients re-send their typing state every few seconds (the spec suggests at most
# 20-30 s); a longer timeout would only keep a vanished typer on screen.
MAX_TIMEOUT_MS = 30_000
DEFAULT_TIMEOUT_MS = 30_000


class TypingService:
    def __init__(self, state: StateStore, notifier: Notifier):
        self.state = state
        self.notifier = notifier
        self._position = 0
        # room id -> user id -> the timer that stops their typing.
        self._typing: dict[str, dict[str, asyncio.TimerHandle]] = {}
        self._changes = StreamChangeCache(0)
        self._wake_tasks: set[asyncio.Task[None]] = set()
        # Told of every typing change (user, room, typing, timeout): federation sends them on.
        self.listeners: list[Callable[[str, str, bool, int], Awaitable[None]]] = []

    def position(self) -> int:
        return self._position

    async def set_typing(self, user_id: str, room_id: str, typing: bool, timeout_ms: int | None) -> None:
        """PUT /rooms/{roomId}/typing/{userId}, for the requester themself."""
        current = await self.state.get_membership(room_id, user_id)
        if current is None or current[0] != "join":
            raise forbidden("You are not joined to this room")
        typers = self._typing.setdefault(room_id, {})
        previous = typers.pop(user_id, None)
        if previous is not None:
            previous.cancel()
        if typing:
            timeout_s = min(DEFAULT_TIMEOUT_MS if timeout_ms is None else timeout_ms, MAX_TIMEOUT_MS) / 1000
            typers[user_id] = asyncio.get_running_loop().call_later(timeout_s, self._stopped, room_id, user_id)
        elif not typers:
            del self._typing[room_id]
        # Renewing a typing user's timeout changes nothing anyone sees.
        if (previous is None) == typing:
            await self._changed(room_id)
        for listener in self.listeners:
            await listener(user_id, room_id, typing, int(timeout_s * 1000) if typing else 0)

    def for_sync(self, room_ids: Sequence[str], after: int | None) -> dict[str, dict[str, Any]]:
        """room id -> its m.typing event, for the rooms whose typers changed after
        position ``after``; with no position, for the rooms where someone types."""
        out: dict[str, dict[str, Any]] = {}
        if after is not None and after >= self._position:
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
        task = asyncio.get_running_loop().create_task(self._changed(room_id))
        self._wake_tasks.add(task)
        task.add_done_callback(self._wake_tasks.discard)

    async def _changed(self, room_id: str) -> None:
        self._position += 1
        self._changes.record(room_id, self._position)
        # Visible at once (no write to wait for): wake the room's members now.
        self.notifier.notify_users(await self.state.get_members(room_id, "join"))
