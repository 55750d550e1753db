"""Purging a room's old history as a server admin, in the background, with a status.

Synapse docs: docs/admin_api/purge_history_api.md. What is deleted is what retention
deletes (storage/retention.py: messages only; state events, the newest event and the
forward extremities stay), up to an event (kept, with everything after it) or a time.
Local users' messages stay unless delete_local_events: they may be the only copies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.services.admin_audit import audit
from homeserver.services.admin_rooms import check_room_id
from homeserver.services.auth import Requester
from homeserver.services.background import BackgroundTasks
from homeserver.services.clock import now_ms
from homeserver.services.pipeline import EventPipeline
from homeserver.services.retention import purge_in_batches
from homeserver.storage.admin_purge import AdminPurgeStore
from homeserver.storage.events import EventStore
from homeserver.storage.retention import RetentionStore
from homeserver.storage.rooms import RoomStore

log = logging.getLogger(__name__)

# Events deleted per transaction, as retention does: no long lock on busy tables.
PURGE_BATCH = 500
# A purge up to an event has no bound in time.
_NO_TIME_BOUND = 2**62
# A job not updated for this long when a process starts was cut off by a stop or crash
# (a running purge touches its job after each batch).
STALE_JOB_MS = 10 * 60 * 1000


@dataclasses.dataclass(frozen=True)
class PurgeRequest:
    room_id: str
    up_to_event_id: str | None = None
    up_to_ts: int | None = None
    delete_local_events: bool = False


@dataclasses.dataclass(frozen=True)
class _Bound:
    before_ts: int
    before_stream_ordering: int | None


class HistoryPurger:
    def __init__(self, server_name: str, store: AdminPurgeStore, retention: RetentionStore, rooms: RoomStore,
                 events: EventStore, pipeline: EventPipeline):
        self.server_name = server_name
        self.store = store
        self.retention = retention
        self.rooms = rooms
        self.events = events
        self.pipeline = pipeline
        self._tasks = BackgroundTasks()

    async def start(self, who: Requester, request: PurgeRequest) -> str:
        bound = await self._bound(request)
        purge_id = secrets.token_urlsafe(12)
        if not await self.store.add_job(purge_id, request.room_id, now_ms()):
            raise invalid_param(f"History purge already in progress for {request.room_id}")
        audit(who.user_id, "purge_history", request.room_id, purge_id=purge_id,
              up_to_event_id=request.up_to_event_id, up_to_ts=request.up_to_ts,
              delete_local_events=request.delete_local_events)
        self._tasks.spawn(self._run(purge_id, request, bound), name=f"purge-history-{purge_id}")
        return purge_id

    async def status(self, purge_id: str) -> dict[str, Any]:
        job = await self.store.job(purge_id)
        if job is None:
            raise not_found(f"purge id '{purge_id}' not found")
        out: dict[str, Any] = {"status": job["status"]}
        if job["status"] == "failed" and job["error"]:
            out["error"] = job["error"]
        return out

    async def _bound(self, request: PurgeRequest) -> _Bound:
        check_room_id(request.room_id)
        if not await self.rooms.room_exists(request.room_id):
            raise not_found("Unknown room")
        if request.up_to_event_id is not None:
            position = await self.store.event_position(request.up_to_event_id)
            if position is None:
                raise not_found(f"Unknown event {request.up_to_event_id}")
            room_id, stream_ordering = position
            if room_id != request.room_id:
                raise invalid_param("Event is for wrong room.")
            return _Bound(_NO_TIME_BOUND, stream_ordering)
        if request.up_to_ts is not None:
            if request.up_to_ts < 0:
                raise invalid_param("purge_up_to_ts must be a non-negative timestamp in milliseconds")
            return _Bound(request.up_to_ts, None)
        raise MatrixError(400, "M_UNKNOWN", "must specify purge_up_to_event_id or purge_up_to_ts")

    async def _run(self, purge_id: str, request: PurgeRequest, bound: _Bound) -> None:
        try:
            total = await self._purge(purge_id, request, bound)
            await self.store.finish_job(purge_id, "complete", now_ms())
            log.info("purged %d events of room %s (purge id %s)", total, request.room_id, purge_id)
        except asyncio.CancelledError:
            await self.store.finish_job(purge_id, "failed", now_ms(), error="The server stopped")
            raise
        except Exception as e:  # a failed purge is reported by its status, never lost
            error = e.error if isinstance(e, MatrixError) else f"{type(e).__name__}: {e}"
            log.exception("purging history of room %s (purge id %s) failed", request.room_id, purge_id)
            await self.store.finish_job(purge_id, "failed", now_ms(), error=error)

    async def _purge(self, purge_id: str, request: PurgeRequest, bound: _Bound) -> int:
        return await purge_in_batches(
            self.retention, self.events, request.room_id, bound.before_ts,
            on_purged=self.pipeline.tell_purged,  # the other processes drop them from their caches
            before_stream_ordering=bound.before_stream_ordering,
            keep_server=None if request.delete_local_events else self.server_name,
            after_batch=lambda: self.store.touch_job(purge_id, now_ms()),
        )

    # Lifecycle

    async def fail_interrupted_jobs(self) -> None:
        now = now_ms()
        failed = await self.store.fail_unfinished_jobs(now - STALE_JOB_MS, "Interrupted by a server stop", now)
        if failed:
            log.warning("%d history purge job(s) were interrupted by a stop and are marked failed", failed)

    async def stop(self) -> None:
        await self._tasks.stop()

    async def wait_idle(self) -> None:
        """Until every running purge has finished (for tests and orderly stops)."""
        await self._tasks.wait_idle()
