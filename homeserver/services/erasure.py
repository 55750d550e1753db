"""Erasing a user: deactivated, their profile, devices and private data gone, their
messages redacted for everyone, their uploads deleted.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3accountdeactivate
("erase": the server should forget the messages the user sent). Synapse marks the user
erased and serves their events redacted to users who join later; here the messages are
redacted with real m.room.redaction events sent by the user through the event pipeline,
so every member and every other server of the room stops showing them; what they can
no longer redact (rooms they had left) this server serves pruned (storage/events.py
marks the events of erased senders, protocol/client_format.py prunes them).

Every step is idempotent and the steps run in an order that a re-run after a crash
midway picks up: profile and redactions while the user is still in the rooms, then
leaving, then the rows and files.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

from homeserver.errors import MatrixError
from homeserver.protocol import ids
from homeserver.services.deactivation import DeactivationService
from homeserver.services.clock import now_ms
from homeserver.services.pipeline import EventDraft, EventPipeline
from homeserver.storage.db import Database
from homeserver.storage.events import EventStore
from homeserver.storage.media import MediaStore
from homeserver.storage.state import StateStore
from homeserver.storage.user_data import UserDataStore
from homeserver.storage.users import UserStore

log = logging.getLogger(__name__)

# Events redacted per query: bounds memory in a room with years of the user's messages.
REDACTION_PAGE = 200


class MediaDeleter(Protocol):
    """Deletes a local media item, its thumbnails and unreferenced files (media/repository.py)."""

    async def delete_local(self, media_id: str) -> bool: ...


class Deactivator(Protocol):
    """The plain deactivation: no logins, devices gone, every room left (services/deactivation.py)."""

    async def deactivate(self, user_id: str, erase: bool) -> None: ...


class ErasureService:
    def __init__(
        self, server_name: str, users: UserStore, user_data: UserDataStore, pipeline: EventPipeline,
        events: EventStore, state: StateStore, media: MediaStore, deactivation: Deactivator,
    ):
        self.media = media
        self.server_name = server_name
        self.users = users
        self.user_data = user_data
        self.pipeline = pipeline
        self.events = events
        self.state = state
        self.deactivation = deactivation
        # Set by the media wiring (homeserver/app.py, the erase-user command): without it
        # the media rows are deleted and their files stay until a `media purge`.
        self.media_deleter: MediaDeleter | None = None
        # Set by the multi-process wiring (services/cluster_hooks.py): the other processes,
        # the running server when this is the erase-user command, serve the user's events
        # pruned from then on too.
        self.broadcast: Callable[[str], None] | None = None

    @classmethod
    def wired(cls, server_name: str, db: Database, users: UserStore, pipeline: EventPipeline,
              events: EventStore, state: StateStore, deactivation: DeactivationService) -> "ErasureService":
        """The container's instance; deactivation with erase=True is handed to it from now on."""
        service = cls(server_name, users, UserDataStore(db), pipeline, events, state, MediaStore(db), deactivation)
        deactivation.erasure = service
        return service

    async def erase_user(self, user_id: str) -> dict[str, int]:
        """Erase a local user; safe to run again. Returns counts of what was done."""
        if not ids.is_valid_user_id(user_id) or ids.server_name_of(user_id) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "Can only erase local users")
        if await self.users.get_user(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown user")
        # 1. No new logins or requests from here on; the erasure is on record (a re-run
        #    after a crash finishes it).
        await self.user_data.mark_erasure_started(user_id, now_ms())
        await self.users.set_deactivated(user_id)
        joined = [room_id for room_id, (membership, _) in (await self.state.get_rooms_for_user(user_id)).items()
                  if membership == "join"]
        # 2. The display name and avatar leave the member events of every joined room
        #    (a new join event without them, as Synapse does on erasure).
        for room_id in joined:
            await self._strip_member_profile(user_id, room_id)
        for field in ("displayname", "avatar_url"):
            await self.users.set_profile_field(user_id, field, None)
        # 3. Their messages are redacted while they are still members (a member may
        #    redact their own events; after leaving they could no longer send).
        redacted = 0
        for room_id in joined:
            redacted += await self._redact_messages(user_id, room_id)
        # 4. Devices and tokens go, every room is left and forgotten.
        await self.deactivation.deactivate(user_id, erase=False)
        # 5. Private rows, then uploads (rows and files).
        await self.user_data.delete_private_data(user_id)
        media = 0
        for media_id in await self.user_data.media_ids_of(user_id):
            if await self._delete_media(media_id):
                media += 1
        await self.user_data.mark_erasure_completed(user_id, now_ms())
        # What was left unredacted (rooms they had already left) is served pruned from now on.
        self.events.forget_sender(user_id)
        if self.broadcast is not None:
            self.broadcast(user_id)
        log.info("erased %s: %d messages redacted in %d rooms, %d media deleted",
                 user_id, redacted, len(joined), media)
        return {"rooms": len(joined), "redacted_events": redacted, "deleted_media": media}

    async def is_erased(self, user_id: str) -> bool:
        """For the admin API's "erased" field (Synapse's)."""
        return await self.user_data.is_erased(user_id)

    async def _strip_member_profile(self, user_id: str, room_id: str) -> None:
        event_id = await self.state.get_current_state_event_id(room_id, "m.room.member", user_id)
        current = await self.events.get_event(event_id) if event_id else None
        if current is None or not any(k in current.content for k in ("displayname", "avatar_url")):
            return  # already stripped (a re-run)
        content = {k: v for k, v in current.content.items() if k not in ("displayname", "avatar_url")}
        try:
            await self.pipeline.send(room_id, EventDraft("m.room.member", user_id, content, state_key=user_id))
        except MatrixError as e:
            log.warning("erasing %s: could not clear their profile in %s: %s", user_id, room_id, e)

    async def _redact_messages(self, user_id: str, room_id: str) -> int:
        version = await self.events.get_room_version(room_id)
        after = -(2**62)
        count = 0
        while True:
            page = await self.user_data.unredacted_messages(room_id, user_id, after, REDACTION_PAGE)
            if not page:
                return count
            for event_id, position in page:
                after = position
                content: dict[str, Any] = {"reason": "erased"}
                if version is not None and version.redacts_in_content:
                    content["redacts"] = event_id
                draft = EventDraft("m.room.redaction", user_id, content, redacts=event_id)
                try:
                    await self.pipeline.send(room_id, draft)
                    count += 1
                except MatrixError as e:
                    # Left the room meanwhile (a remote kick): the rest of it cannot be redacted by them.
                    log.warning("erasing %s: could not redact %s in %s: %s", user_id, event_id, room_id, e)
                    return count

    async def _delete_media(self, media_id: str) -> bool:
        if self.media_deleter is not None:
            return await self.media_deleter.delete_local(media_id)
        log.warning("erasing: no media repository wired; media %s loses its rows, its files stay", media_id)
        return await self.media.delete_local(media_id) is not None
