"""Profiles: display name, avatar and further fields; changes reach every joined room.

The profiles of other servers' users are asked of their servers (``remote_lookup``,
set by the federation wiring).
Spec: https://spec.matrix.org/v1.19/client-server-api/#profiles
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Awaitable, Callable

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.pipeline import EventDraft, EventPipeline
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore
from homeserver.storage.users import UserStore

log = logging.getLogger(__name__)

MAX_DISPLAYNAME_LENGTH = 256
# The spec: "the total profile MUST be under 64 KiB"; keys at most 255 bytes.
MAX_PROFILE_BYTES = 65_536
MAX_KEY_BYTES = 255
# The keyName pattern of profile.yaml: the defined keys or a namespaced identifier.
_KEY_NAME = re.compile(r"avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


class ProfileService:
    def __init__(self, users: UserStore, state: StateStore, events: EventStore, pipeline: EventPipeline,
                 server_name: str | None = None):
        self.users = users
        self.state = state
        self.events = events
        self.pipeline = pipeline
        self.server_name = server_name
        # User id -> their profile from their server (GET /query/profile); set by
        # federation/app.py when federation is on.
        self.remote_lookup: Callable[[str], Awaitable[dict[str, Any]]] | None = None

    async def get(self, user_id: str) -> dict[str, Any]:
        if (self.remote_lookup is not None and self.server_name is not None
                and ids.server_name_of(user_id) != self.server_name):
            return await self.remote_lookup(user_id)
        profile = await self.users.get_profile(user_id)
        if profile is None:
            raise not_found("Profile not found")
        return profile

    async def set_field(self, user_id: str, field: str, value: Any) -> None:
        if field == "displayname" and isinstance(value, str) and len(value) > MAX_DISPLAYNAME_LENGTH:
            raise MatrixError(400, "M_TOO_LARGE", "Display name is too long")
        if field in ("displayname", "avatar_url") and value is not None and not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", f"{field} must be a string")
        if len(field.encode()) > MAX_KEY_BYTES:
            raise MatrixError(400, "M_KEY_TOO_LARGE", "Profile field name is too long")
        if not _KEY_NAME.fullmatch(field):
            raise invalid_param("Invalid profile key")
        if value is not None:
            profile = {**await self.get(user_id), field: value}
            if len(json.dumps(profile, ensure_ascii=False, separators=(",", ":")).encode()) >= MAX_PROFILE_BYTES:
                raise MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB")
        await self.users.set_profile_field(user_id, field, value)
        if field in ("displayname", "avatar_url"):
            await self._update_room_memberships(user_id, field, value)

    async def _update_room_memberships(self, user_id: str, field: str, value: Any) -> None:
        """Send a new join event with the new profile into every joined room, as Synapse does."""
        rooms = await self.state.get_rooms_for_user(user_id)
        for room_id, (membership, event_id) in rooms.items():
            if membership != "join":
                continue
            current = await self.events.get_event(event_id)
            content = dict(current.content) if current else {"membership": "join"}
            if value is None:
                content.pop(field, None)
            else:
                content[field] = value
            try:
                await self.pipeline.send(room_id, EventDraft("m.room.member", user_id, content, state_key=user_id))
            except MatrixError as e:
                log.warning("could not update profile of %s in %s: %s", user_id, room_id, e)
