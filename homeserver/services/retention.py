"""Message retention and the remote media cache: a background job that deletes what is
older than the rooms' (or the server's) lifetime.

A room's lifetime is its `m.room.retention` state (`max_lifetime`, in ms; spec proposal
MSC1763, as Synapse implements it), or else the server's `retention.default_max_lifetime`;
either is bounded by `allowed_lifetime_min`/`allowed_lifetime_max`. Rooms with neither
keep everything. What is purged and what stays: storage/retention.py.

One process runs the job: with several processes on one database, hand `start` and
`stop` to the leader election (`Cluster.run_on_leader`) through `leader_gate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from homeserver.config import RetentionConfig
from homeserver.services.clock import now_ms
from homeserver.storage.events import EventStore
from homeserver.storage.retention import RetentionStore

log = logging.getLogger(__name__)

# Events deleted per transaction: short transactions, no long lock on busy tables.
PURGE_BATCH = 500


async def purge_in_batches(
    store: RetentionStore, events: EventStore, room_id: str, before_ts: int, *,
    on_purged: Callable[[list[str]], None] | None,
    before_stream_ordering: int | None = None, keep_server: str | None = None,
    after_batch: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Purge the room's messages older than ``before_ts`` (``RetentionStore.purge_messages_before``,
    its narrowing arguments too), a batch per transaction, each dropped from the event cache
    and handed to ``on_purged`` (the other processes' caches); the number purged."""
    total = 0
    while True:
        ids = await store.purge_messages_before(
            room_id, before_ts, PURGE_BATCH, before_stream_ordering=before_stream_ordering, keep_server=keep_server)
        for event_id in ids:
            events.invalidate(event_id)
        if ids:
            if on_purged is not None:
                on_purged(ids)
            if after_batch is not None:
                await after_batch()
        total += len(ids)
        if len(ids) < PURGE_BATCH:
            return total


class RemoteMediaPurger(Protocol):
    """media/repository.py MediaRepository."""

    async def purge_remote_cache(self, accessed_before_ts: int) -> int: ...


class LeaderGate(Protocol):
    """homeserver/services/cluster.py Cluster: runs a job on one process only."""

    async def run_on_leader(self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None: ...

    async def end_job(self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None: ...


@dataclasses.dataclass
class RetentionReport:
    rooms: int = 0
    events_purged: int = 0
    remote_media_purged: int = 0


def room_lifetime_ms(config: RetentionConfig, policy: dict[str, Any] | None) -> int | None:
    """The lifetime that applies to a room, in ms, or None: keep everything."""
    lifetime = None
    if policy is not None:
        value = policy.get("max_lifetime")
        # A bool is an int to Python, not to the spec.
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            lifetime = value
    if lifetime is None and config.default_max_lifetime is not None:
        lifetime = config.default_max_lifetime * 1000
    if lifetime is None:
        return None
    if config.allowed_lifetime_min is not None:
        lifetime = max(lifetime, config.allowed_lifetime_min * 1000)
    if config.allowed_lifetime_max is not None:
        lifetime = min(lifetime, config.allowed_lifetime_max * 1000)
    return lifetime


class RetentionJob:
    def __init__(self, config: RetentionConfig, store: RetentionStore, events: EventStore,
                 clock: Callable[[], int] = now_ms, leader_gate: LeaderGate | None = None):
        self.config = config
        self.store = store
        self.events = events
        self.clock = clock
        # Set by the media wiring (homeserver/app.py): cached remote media to expire.
        self.remote_media: RemoteMediaPurger | None = None
        # The multi-process wiring (services/cluster.py): then only the leader runs the job.
        self.leader_gate = leader_gate
        # Told the ids of purged events after each batch (this process's event cache is
        # cleared here): the multi-process wiring can pass them on to the other processes.
        self.on_purged: Callable[[list[str]], None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, now: int | None = None) -> RetentionReport:
        """One pass over every room and the remote media cache (what the timer runs)."""
        now = self.clock() if now is None else now
        report = RetentionReport()
        policies = await self.store.room_policies()
        room_ids = await self.store.room_ids() if self.config.default_max_lifetime is not None else sorted(policies)
        for room_id in room_ids:
            lifetime = room_lifetime_ms(self.config, policies.get(room_id))
            if lifetime is None:
                continue
            purged = await self.purge_room(room_id, now - lifetime)
            if purged:
                report.rooms += 1
                report.events_purged += purged
        if self.config.remote_media_max_age is not None and self.remote_media is not None:
            report.remote_media_purged = await self.remote_media.purge_remote_cache(
                now - self.config.remote_media_max_age * 1000
            )
        if report.events_purged or report.remote_media_purged:
            log.info("retention: purged %d events in %d rooms, %d cached remote media",
                     report.events_purged, report.rooms, report.remote_media_purged)
        return report

    async def purge_room(self, room_id: str, before_ts: int) -> int:
        return await purge_in_batches(self.store, self.events, room_id, before_ts, on_purged=self.on_purged)

    # Running in the background.

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # the next pass tries again; the server keeps running
                log.exception("retention: purge failed")
            await asyncio.sleep(self.config.purge_interval)

    async def lifecycle(self, _app: Any) -> AsyncIterator[None]:
        """For the app's cleanup_ctx: the job runs while the app does, if enabled."""
        if not self.config.enabled:
            yield
            return
        if self.leader_gate is not None:
            await self.leader_gate.run_on_leader(self.start, self.stop)
        else:
            await self.start()
        try:
            yield
        finally:
            if self.leader_gate is not None:
                await self.leader_gate.end_job(self.start, self.stop)
            await self.stop()
