"""Server notices: a message from the server to one user, in a room between them and a
system user (Synapse docs: docs/admin_api/server_notices.md, docs/server_notices.md).

The room is created on the first notice, named by the configuration, tagged
m.server_notice for the user, and reused while the user is invited or joined; after
they leave, the next notice opens a new room. The user may read, not write (users_default -10).
"""

from __future__ import annotations

from typing import Any

from homeserver.config import ServerNoticesConfig
from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.room_versions import DEFAULT_ROOM_VERSION
from homeserver.services.admin_audit import audit
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.pipeline import EventDraft, EventPipeline
from homeserver.services.room_creation import CreateRoomRequest, RoomCreator
from homeserver.services.room_tags import RoomTags
from homeserver.storage.admin_users import AdminUserStore
from homeserver.storage.state import StateStore
from homeserver.storage.users import UserStore

NOTICE_TAG = "m.server_notice"
SYSTEM_USER_TYPE = "support"


class ServerNotices:
    def __init__(
        self, config: ServerNoticesConfig, server_name: str, users: UserStore, admin_users: AdminUserStore,
        state: StateStore, room_creator: RoomCreator, pipeline: EventPipeline, tags: RoomTags,
    ):
        self.config = config
        self.server_name = server_name
        self.users = users
        self.admin_users = admin_users
        self.state = state
        self.room_creator = room_creator
        self.pipeline = pipeline
        self.tags = tags

    @property
    def system_user_id(self) -> str:
        return f"@{self.config.system_mxid_localpart}:{self.server_name}"

    async def send(self, who: Requester, user_id: str, content: Any, event_type: str = "m.room.message",
                   state_key: str | None = None) -> str:
        if not self.config.enabled:
            raise MatrixError(400, "M_UNKNOWN", "Server notices are not enabled on this server")
        if not ids.is_valid_user_id(user_id) or ids.server_name_of(user_id) != self.server_name:
            raise invalid_param("Server notices can only be sent to local users")
        if not isinstance(content, dict):
            raise MatrixError(400, "M_BAD_JSON", "content must be a JSON object")
        if not isinstance(event_type, str) or not event_type:
            raise invalid_param("type must be a string")
        if state_key is not None and not isinstance(state_key, str):
            raise invalid_param("state_key must be a string")
        target = await self.users.get_user(user_id)
        if target is None:
            raise not_found("User not found")
        if target.deactivated:
            raise invalid_param("The user is deactivated")
        system = await self._system_user()
        if user_id == system:
            raise invalid_param("The server notices user cannot be sent notices")
        room_id = await self._notice_room(system, user_id)
        event = await self.pipeline.send(room_id, EventDraft(event_type, system, content, state_key=state_key))
        audit(who.user_id, "send_server_notice", user_id, event_id=event.event_id)
        return event.event_id

    async def _system_user(self) -> str:
        user_id = self.system_user_id
        existing = await self.admin_users.get_user(user_id)
        if existing is None:
            # No password: nobody can log in as it.
            await self.users.create_user(user_id, None, now_ms(), displayname=self.config.system_mxid_display_name)
            await self.admin_users.set_user_type(user_id, SYSTEM_USER_TYPE)
        elif existing.user_type != SYSTEM_USER_TYPE:
            raise MatrixError(400, "M_UNKNOWN", f"{user_id} is a regular account; set another"
                                                " server_notices.system_mxid_localpart")
        return user_id

    async def _notice_room(self, system: str, user_id: str) -> str:
        for room_id, (membership, _) in sorted((await self.state.get_rooms_for_user(system)).items()):
            if membership != "join":
                continue
            theirs = await self.state.get_membership(room_id, user_id)
            if theirs is not None and theirs[0] in ("invite", "join"):
                return room_id
        room_id, _ = await self.room_creator.create(system, CreateRoomRequest(
            version=DEFAULT_ROOM_VERSION, preset="private_chat", is_public=False, name=self.config.room_name,
            invite=[user_id], power_level_content_override={"users_default": -10},
        ))
        await self.tags.put(user_id, room_id, NOTICE_TAG, {})
        return room_id
