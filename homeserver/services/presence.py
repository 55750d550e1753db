"""Presence: online, unavailable (idle) or offline, with a status message.

/sync (set_presence) and PUT /presence change a user's presence; changes others
see take the next presence position and reach, through /sync, the users who
share a joined room with them. Syncing costs no database write unless the
state changes, or the timestamps are over a minute old (REFRESH_MS).

The idle timeout runs as one periodic sweep rather than a timer per user: a
user not syncing for IDLE_MS becomes unavailable, and OFFLINE_MS later offline.
Spec: https://spec.matrix.org/v1.19/client-server-api/#presence

Users of other servers get rows too, from their servers' m.presence EDUs
(``remote_update``); the sweep takes one offline when their server has said
nothing for FEDERATION_TIMEOUT_MS, as Synapse does. ``listeners`` hear the
visible changes of our own users (the federation sends them on), and, so that
other servers do not time them out in turn, the sweep repeats the presence of
those not offline every FEDERATION_PING_MS.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any, Awaitable, Callable

from homeserver.errors import forbidden
from homeserver.protocol import ids
from homeserver.protocol.filters import EventFilter
from homeserver.services.clock import now_ms
from homeserver.services.notifier import Notifier
from homeserver.storage.presence import PresenceRow, PresenceStore
from homeserver.storage.streams import StreamIdGenerator

log = logging.getLogger(__name__)

ONLINE, UNAVAILABLE, OFFLINE = "online", "unavailable", "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)

IDLE_MS = 5 * 60_000
OFFLINE_MS = 30 * 60_000
# Timestamps are written at most this often when nothing visible changes; the idle
# timeout is late by at most this much.
REFRESH_MS = 60_000
SWEEP_INTERVAL_S = 60.0
# A remote user not heard of for this long is taken offline (their server re-sends
# the presence of its online users more often than this: Synapse every 25 minutes).
FEDERATION_TIMEOUT_MS = 30 * 60_000
FEDERATION_PING_MS = 25 * 60_000
# How often the sweep looks for users due a repeat (a read of every row not offline).
PING_CHECK_MS = 60_000

# (user id, content of their m.presence event)
PresenceListener = Callable[[str, dict[str, Any]], Awaitable[None]]


class PresenceService:
    def __init__(self, enabled: bool, store: PresenceStore, stream: StreamIdGenerator, notifier: Notifier,
                 server_name: str | None = None):
        self.enabled = enabled
        self.store = store
        self.stream = stream
        self.notifier = notifier
        # Without a server name every user counts as ours.
        self.server_name = server_name
        self.listeners: list[PresenceListener] = []
        # Our users not offline -> when the listeners last heard of them.
        self._announced: dict[str, int] = {}
        self._next_ping_check = 0
        # The stored row of every user seen since start, so that a sync needs no read.
        self._rows: dict[str, PresenceRow | None] = {}
        # Writes decide on the row as it is when they run: a sweep and a sync of one
        # user must not interleave.
        self._lock = asyncio.Lock()
        # Other processes sharing the database (services/cluster_hooks.py): told of each row
        # written, so they drop their copy. The sweep runs on the cluster's leader only
        # (client/presence.py hands start_sweeping and stop_sweeping to the election).
        self.row_written: Callable[[str], None] = lambda user_id: None
        self._sweeping: asyncio.Task[None] | None = None

    def forget_cached(self, user_id: str) -> None:
        """Another process wrote the user's row."""
        self._rows.pop(user_id, None)

    async def user_syncing(self, user_id: str, set_presence: str, now: int | None = None) -> None:
        """A /sync with ``set_presence``: online marks the user online and active (unless
        they chose to be unavailable), unavailable marks them idle, offline changes nothing."""
        if not self.enabled or set_presence == OFFLINE:
            return
        now = now_ms() if now is None else now
        current = await self._row(user_id)
        if current is not None and not self._sync_changes(current, set_presence, now):
            return  # the usual case: nothing to write
        async with self._lock:
            current = await self._row(user_id)
            if current is None:
                current = PresenceRow(user_id, OFFLINE, None, now, now, False, 0)
            elif not self._sync_changes(current, set_presence, now):
                return  # another sync of the user's has just written
            if set_presence == ONLINE:
                if current.state == OFFLINE or (current.state == UNAVAILABLE and not current.explicit):
                    new = dataclasses.replace(current, state=ONLINE, last_active_ts=now, last_sync_ts=now,
                                              explicit=False)
                elif current.state == ONLINE:
                    new = dataclasses.replace(current, last_active_ts=now, last_sync_ts=now)
                else:
                    new = dataclasses.replace(current, last_sync_ts=now)
            else:
                new = dataclasses.replace(current, state=UNAVAILABLE, last_sync_ts=now)
            await self._write(current, new)

    def _sync_changes(self, row: PresenceRow, set_presence: str, now: int) -> bool:
        """Whether a sync with ``set_presence`` must write: a visible change or old timestamps."""
        if set_presence == ONLINE:
            if row.state == OFFLINE or (row.state == UNAVAILABLE and not row.explicit):
                return True
            if row.state == ONLINE and now - row.last_active_ts >= REFRESH_MS:
                return True
        elif row.state != UNAVAILABLE:
            return True
        return now - row.last_sync_ts >= REFRESH_MS

    async def set_presence(self, user_id: str, state: str, status_msg: str | None, now: int | None = None) -> None:
        """PUT /presence/{userId}/status: the user's own choice, which bumps their activity."""
        if not self.enabled:
            return  # accepted and ignored, as Synapse does with presence off
        now = now_ms() if now is None else now
        async with self._lock:
            current = await self._row(user_id) or PresenceRow(user_id, OFFLINE, None, now, now, False, 0)
            new = dataclasses.replace(
                current, state=state, status_msg=status_msg, last_active_ts=now, last_sync_ts=now,
                explicit=state == UNAVAILABLE,
            )
            await self._write(current, new)

    async def remote_update(
        self, user_id: str, state: str, status_msg: str | None, last_active_ago: int, now: int | None = None,
    ) -> bool:
        """The presence of another server's user, as their server told it (an m.presence
        EDU); kept only while they share a room with one of our users. Whether it was."""
        if not self.enabled or self._is_local(user_id) or state not in STATES:
            return False
        if not any(self._is_local(u) for u in await self.store.room_partners(user_id) if u != user_id):
            return False
        now = now_ms() if now is None else now
        async with self._lock:
            current = await self._row(user_id) or PresenceRow(user_id, OFFLINE, None, now, now, False, 0)
            # last_sync_ts is when their server last spoke of them (FEDERATION_TIMEOUT_MS).
            new = dataclasses.replace(current, state=state, status_msg=status_msg,
                                      last_active_ts=now - max(0, last_active_ago), last_sync_ts=now,
                                      explicit=False)
            await self._write(current, new)
        return True

    def _is_local(self, user_id: str) -> bool:
        return self.server_name is None or ids.server_name_of(user_id) == self.server_name

    async def get_presence_for(self, observer: str, user_id: str) -> dict[str, Any]:
        """GET /presence/{userId}/status: one's own, or that of someone sharing a room."""
        if self.enabled and observer != user_id and observer not in await self.store.room_partners(user_id):
            raise forbidden("You are not allowed to see their presence")
        return await self.get_presence(user_id)

    async def get_presence(self, user_id: str, now: int | None = None) -> dict[str, Any]:
        """The content of the user's m.presence event (just offline when presence is off)."""
        if not self.enabled:
            return {"presence": OFFLINE}
        row = await self._row(user_id)
        if row is None:
            return {"presence": OFFLINE}
        return _content(row, now_ms() if now is None else now)

    async def for_sync(
        self, user_id: str, after: int | None, up_to: int, presence_filter: EventFilter,
        event_window: tuple[int, int] | None = None, members_moved: bool = True,
    ) -> list[dict[str, Any]]:
        """The m.presence events of the user and of those sharing a room with them: with
        ``after``, the changes in (after, up_to]; without, every one not offline.

        With ``event_window`` (the sync's window of the event stream), also the current
        presence of those who came to share a room with the user in it, which the
        client has not seen yet; the caller who knows that no membership event of the
        user's rooms is in that window says so with ``members_moved``.
        """
        if not self.enabled or not presence_filter.allows_type("m.presence"):
            return []
        rows = []
        if after is None or after < up_to:
            rows = await self.store.partners_changed(
                user_id, after or 0, up_to, include_offline=after is not None)
        if (after is not None and event_window is not None and event_window[0] < event_window[1]
                and members_moved):
            seen = {row.user_id for row in rows}
            rows += [
                row for row in await self.store.newly_shared(user_id, *event_window)
                if row.user_id not in seen and row.stream_id <= up_to
            ]
        now = now_ms()
        events = [
            {"type": "m.presence", "sender": row.user_id, "content": _content(row, now)}
            for row in rows
            if (presence_filter.senders is None or row.user_id in presence_filter.senders)
            and row.user_id not in presence_filter.not_senders
        ]
        if presence_filter.limit is not None:
            events = events[-presence_filter.limit:]  # the latest changes
        return events

    async def sweep(self, now: int | None = None) -> list[str]:
        """The idle timeout: users not syncing for IDLE_MS become unavailable, and
        OFFLINE_MS later offline; the users changed. Run periodically, and at start,
        where it takes everyone whose last sync is long gone offline."""
        if not self.enabled:
            return []
        now = now_ms() if now is None else now
        changed = []
        for candidate in await self.store.idle_since(now - IDLE_MS):
            async with self._lock:
                # The user may have synced since the candidates were read.
                current = await self._row(candidate.user_id)
                if current is None or current.state == OFFLINE:
                    continue
                idle_for = now - current.last_sync_ts
                if not self._is_local(current.user_id):
                    if idle_for < FEDERATION_TIMEOUT_MS:
                        continue
                    new = dataclasses.replace(current, state=OFFLINE)
                elif idle_for >= IDLE_MS + OFFLINE_MS:
                    new = dataclasses.replace(current, state=OFFLINE, explicit=False)
                elif idle_for >= IDLE_MS and current.state == ONLINE:
                    new = dataclasses.replace(current, state=UNAVAILABLE)
                else:
                    continue
                await self._write(current, new)
                changed.append(current.user_id)
        if self.listeners and now >= self._next_ping_check:
            self._next_ping_check = now + PING_CHECK_MS
            await self._repeat_to_listeners(now)
        return changed

    async def _repeat_to_listeners(self, now: int) -> None:
        # Every row not offline: last synced before a moment that has not come yet.
        for candidate in await self.store.idle_since(now + 1):
            user_id = candidate.user_id
            if not self._is_local(user_id) or now - self._announced.get(user_id, 0) < FEDERATION_PING_MS:
                continue
            row = await self._row(user_id)  # the cached row may be newer
            if row is not None and row.state != OFFLINE:
                await self._tell_listeners(row, now)

    async def start_sweeping(self) -> None:
        """Sweep now, and then every SWEEP_INTERVAL_S until stop_sweeping. A process that
        takes over the lead sweeps at once: users its predecessor left online go offline."""
        if self._sweeping is None:
            self._sweeping = asyncio.create_task(self._sweep_periodically(), name="presence sweep")

    async def stop_sweeping(self) -> None:
        task, self._sweeping = self._sweeping, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep_periodically(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence sweep failed")
            await asyncio.sleep(SWEEP_INTERVAL_S)

    async def _row(self, user_id: str) -> PresenceRow | None:
        if user_id not in self._rows:
            self._rows[user_id] = await self.store.get(user_id)
        return self._rows[user_id]

    async def _write(self, current: PresenceRow, new: PresenceRow) -> None:
        visible = (current.state, current.status_msg) != (new.state, new.status_msg) or current.stream_id == 0
        if not visible and new == current:
            return
        if not visible:
            await self.store.put(new)
            self._rows[new.user_id] = new
            self.row_written(new.user_id)
            return
        # Dropped first: should the write fail, the next reader loads what is stored.
        self._rows.pop(new.user_id, None)
        async with self.stream.allocate() as position:
            new = dataclasses.replace(new, stream_id=position)
            await self.store.put(new)
            self.row_written(new.user_id)
        self._rows[new.user_id] = new
        self.notifier.notify_at(self.stream, position, await self.store.room_partners(new.user_id))
        if self.listeners and self._is_local(new.user_id):
            await self._tell_listeners(new, now_ms())

    async def _tell_listeners(self, row: PresenceRow, now: int) -> None:
        if row.state == OFFLINE:
            self._announced.pop(row.user_id, None)
        else:
            self._announced[row.user_id] = now
        content = _content(row, now)
        for listener in self.listeners:
            try:
                await listener(row.user_id, content)
            except Exception:  # the change is stored; telling other servers is best effort
                log.exception("presence listener failed for %s", row.user_id)


def _content(row: PresenceRow, now: int) -> dict[str, Any]:
    content: dict[str, Any] = {
        "presence": row.state,
        "last_active_ago": max(0, now - row.last_active_ts),
        # Syncing counts as activity here: an online user is currently active, and
        # clients need no last_active_ago updates until that changes.
        "currently_active": row.state == ONLINE,
    }
    if row.status_msg is not None:
        content["status_msg"] = row.status_msg
    return content
