"""Deleting a room as a server admin: shut it down (local members leave, aliases and the
directory entry go, optionally blocked), then purge it from the database.

Synapse docs: docs/admin_api/rooms.md, "Delete Room API" (version 2 runs in the
background and reports its progress by delete id; version 1 answers when done).
The new_room_user_id option (a room to move the members to) is not implemented:
new_room_id is always null.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.admin_audit import audit
from homeserver.services.admin_rooms import check_room_id
from homeserver.services.auth import Requester
from homeserver.services.background import BackgroundTasks
from homeserver.services.clock import now_ms
from homeserver.services.membership import MembershipService
from homeserver.services.pipeline import EventPipeline
from homeserver.storage.admin_rooms import AdminRoomStore
from homeserver.storage.events import EventStore
from homeserver.storage.purge import PurgeStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore

log = logging.getLogger(__name__)

UNFINISHED = ("shutting_down", "purging")
# A job not updated for this long when a process starts was cut off by a stop or crash.
STALE_JOB_MS = 10 * 60 * 1000


@dataclasses.dataclass(frozen=True)
class DeleteOptions:
    block: bool = False
    purge: bool = True
    force_purge: bool = False
    message: str | None = None


class RoomDeleter:
    def __init__(
        self, server_name: str, store: AdminRoomStore, purge: PurgeStore, rooms: RoomStore, state: StateStore,
        events: EventStore, membership: MembershipService, pipeline: EventPipeline,
    ):
        self.server_name = server_name
        self.store = store
        self.purge_store = purge
        self.rooms = rooms
        self.state = state
        self.events = events
        self.membership = membership
        self.pipeline = pipeline
        self._tasks = BackgroundTasks()

    # Version 2: in the background

    async def start(self, who: Requester, room_id: str, options: DeleteOptions) -> str:
        await self._check(room_id, options)
        for job in await self.store.delete_jobs_of_room(room_id):
            if job["status"] in UNFINISHED:
                raise invalid_param(f"History purge already in progress for {room_id}")
        delete_id = secrets.token_urlsafe(12)
        await self.store.add_delete_job(delete_id, room_id, "shutting_down", now_ms())
        audit(who.user_id, "delete_room", room_id, delete_id=delete_id, block=options.block, purge=options.purge)
        self._tasks.spawn(self._run(who.user_id, delete_id, room_id, options), name=f"delete-room-{delete_id}")
        return delete_id

    async def _run(self, admin: str, delete_id: str, room_id: str, options: DeleteOptions) -> None:
        try:
            result = await self._shutdown(admin, room_id, options)
            await self.store.update_delete_job(
                delete_id, "purging" if options.purge else "complete", now_ms(), shutdown_room=result)
            if options.purge:
                await self._purge(room_id, options.force_purge)
                await self.store.update_delete_job(delete_id, "complete", now_ms())
        except asyncio.CancelledError:
            await self.store.update_delete_job(delete_id, "failed", now_ms(), error="The server stopped")
            raise
        except Exception as e:  # a failed delete is reported by its status, never lost
            error = e.error if isinstance(e, MatrixError) else f"{type(e).__name__}: {e}"
            log.exception("deleting room %s (delete id %s) failed", room_id, delete_id)
            await self.store.update_delete_job(delete_id, "failed", now_ms(), error=error)

    async def status_of_room(self, room_id: str) -> dict[str, Any]:
        check_room_id(room_id)
        jobs = await self.store.delete_jobs_of_room(room_id)
        if not jobs:
            raise not_found(f"No delete task for room_id '{room_id}' found")
        return {"results": [_status(job) for job in jobs]}

    async def status(self, delete_id: str) -> dict[str, Any]:
        job = await self.store.delete_job(delete_id)
        if job is None:
            raise not_found(f"delete id '{delete_id}' not found")
        return _status(job)

    # Version 1: in the request

    async def delete_now(self, who: Requester, room_id: str, options: DeleteOptions) -> dict[str, Any]:
        await self._check(room_id, options)
        audit(who.user_id, "delete_room", room_id, block=options.block, purge=options.purge)
        result = await self._shutdown(who.user_id, room_id, options)
        if options.purge:
            await self._purge(room_id, options.force_purge)
        return result

    # Lifecycle

    async def fail_interrupted_jobs(self) -> None:
        now = now_ms()
        failed = await self.store.fail_unfinished_jobs(now - STALE_JOB_MS, "Interrupted by a server stop", now)
        if failed:
            log.warning("%d room delete job(s) were interrupted by a stop and are marked failed", failed)

    async def stop(self) -> None:
        await self._tasks.stop()

    async def wait_idle(self) -> None:
        """Until every running delete has finished (for tests and orderly stops)."""
        await self._tasks.wait_idle()

    # Steps

    async def _check(self, room_id: str, options: DeleteOptions) -> None:
        check_room_id(room_id)
        if not options.block and not await self.rooms.room_exists(room_id):
            raise not_found("Unknown room id")

    async def _shutdown(self, admin: str, room_id: str, options: DeleteOptions) -> dict[str, Any]:
        result: dict[str, Any] = {"kicked_users": [], "failed_to_kick_users": [], "local_aliases": [],
                                  "new_room_id": None}
        if options.block:
            await self.store.block(room_id, admin, now_ms())
        if not await self.rooms.room_exists(room_id):
            return result  # blocked in advance: nothing else to do
        await self.rooms.set_visibility(room_id, False)
        members = await self.state.get_members(room_id)
        for user_id, membership in sorted(members.items()):
            if membership not in ("join", "invite", "knock") or ids.server_name_of(user_id) != self.server_name:
                continue
            try:
                # As Synapse does, the member leaves by themself: no power level is needed.
                await self.membership.leave(user_id, room_id, reason=options.message)
                await self.rooms.forget(user_id, room_id)
                result["kicked_users"].append(user_id)
            except Exception:  # one member failing must not stop the others
                log.exception("deleting room %s: could not remove %s", room_id, user_id)
                result["failed_to_kick_users"].append(user_id)
        for alias in await self.rooms.aliases_of_room(room_id):
            await self.rooms.delete_alias(alias)
            result["local_aliases"].append(alias)
        return result

    async def _purge(self, room_id: str, force: bool) -> None:
        if not force:
            joined = [u for u in await self.state.get_members(room_id, "join")
                      if ids.server_name_of(u) == self.server_name]
            if joined:
                raise MatrixError(400, "M_UNKNOWN", f"Users are still joined to this room: {', '.join(joined)}")
        async with self.pipeline.room_lock(room_id):
            counts, event_ids = await self.purge_store.purge_room(room_id)
        for event_id in event_ids:
            self.events.invalidate(event_id)
        self.events.forget_room(room_id)
        # The pipeline's cached tip and joined members of the room are gone with it, here
        # and on the other processes.
        self.pipeline.room_written_elsewhere(room_id, membership=True)
        self.pipeline.tell_purged(list(event_ids), room_id)
        log.info("purged room %s: %s", room_id, ", ".join(f"{t}={n}" for t, n in counts.items() if n))


def _status(job: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"delete_id": job["delete_id"], "room_id": job["room_id"], "status": job["status"]}
    if job["error"]:
        out["error"] = job["error"]
    out["shutdown_room"] = job["shutdown_room"] or {
        "kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None}
    return out
