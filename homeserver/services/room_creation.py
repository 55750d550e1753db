"""POST /createRoom: the sequence of initial events of a new room.

Spec: https://spec.matrix.org/v1.19/client-server-api/#creation
"""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.errors import MatrixError, invalid_param
from homeserver.protocol import ids
from homeserver.protocol.room_versions import RoomVersion
from homeserver.services.membership import MembershipService
from homeserver.services.pipeline import EventDraft, EventPipeline
from homeserver.storage.rooms import RoomStore

PRESETS = {
    "private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join"},
    "trusted_private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join"},
    # The spec's table names "forbidden" explicitly (absence would mean the same to clients).
    "public_chat": {"join_rule": "public", "history_visibility": "shared", "guest_access": "forbidden"},
}


@dataclasses.dataclass
class CreateRoomRequest:
    version: RoomVersion
    preset: str
    is_public: bool
    name: str | None = None
    topic: str | None = None
    alias_localpart: str | None = None
    invite: list[str] = dataclasses.field(default_factory=list)
    is_direct: bool = False
    creation_content: dict[str, Any] = dataclasses.field(default_factory=dict)
    initial_state: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    power_level_content_override: dict[str, Any] | None = None


class RoomCreator:
    def __init__(self, server_name: str, pipeline: EventPipeline, rooms: RoomStore, membership: MembershipService):
        self.server_name = server_name
        self.pipeline = pipeline
        self.rooms = rooms
        self.membership = membership

    async def create(self, creator: str, request: CreateRoomRequest) -> tuple[str, str | None]:
        """Create the room; returns (room id, canonical alias)."""
        version = request.version
        alias = None
        if request.alias_localpart is not None:
            alias = f"#{request.alias_localpart}:{self.server_name}"
            if not ids.is_valid_room_alias(alias) or ":" in request.alias_localpart:
                raise invalid_param("Invalid room alias name")
            if await self.rooms.get_alias(alias) is not None:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        for user_id in request.invite:
            if not ids.is_valid_user_id(user_id):
                raise invalid_param(f"Invalid user id to invite: {user_id}")
        # The creator is in the room already; inviting them again would fail half-way.
        invitees = [u for u in dict.fromkeys(request.invite) if u != creator]
        for user_id in invitees:
            self.membership.check_invite_target(user_id)
        trusted_invitees = invitees if request.preset == "trusted_private_chat" else []

        # 1. m.room.create
        create_content = dict(request.creation_content)
        create_content["room_version"] = version.identifier
        if not version.implicit_room_creator:
            create_content["creator"] = creator
        if version.privileged_creators and trusted_invitees:
            # Room version 12: trusted private chats make the invitees co-creators (as Synapse does).
            create_content["additional_creators"] = list(
                dict.fromkeys(list(create_content.get("additional_creators", [])) + trusted_invitees)
            )
        create_draft = EventDraft("m.room.create", creator, create_content, state_key="")
        # 2. the creator joins
        join_draft = await self.membership.creator_join_draft(creator)
        # 3.-7.
        state_drafts = self._state_drafts(creator, request, alias, trusted_invitees)
        # 8. invites (sent through the membership service, which adds the stripped state)
        invite_drafts = [
            EventDraft("m.room.member", creator, await self.membership.invite_content(u, request.is_direct),
                       state_key=u)
            for u in invitees
        ]

        try:
            self.pipeline.check_new_room(version, [create_draft, join_draft, *state_drafts, *invite_drafts])
        except MatrixError as e:
            if e.errcode == "M_FORBIDDEN":
                # Spec: initial state the rules refuse (say, a creator without the
                # power to set the name) is M_INVALID_ROOM_STATE.
                raise MatrixError(400, "M_INVALID_ROOM_STATE", f"Invalid initial state: {e.error}")
            raise

        create = await self.pipeline.create_room(version, create_draft, request.is_public)
        room_id = create.room_id
        await self.pipeline.send(room_id, join_draft)
        if alias is not None and not await self.rooms.create_alias(alias, room_id, creator):
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        for draft in state_drafts:
            await self.pipeline.send(room_id, draft)
        for user_id in invitees:
            await self.membership.invite(creator, room_id, user_id, is_direct=request.is_direct)
        return room_id, alias

    def _state_drafts(
        self, creator: str, request: CreateRoomRequest, alias: str | None, trusted_invitees: list[str]
    ) -> list[EventDraft]:
        """Steps 3 to 7 of the spec's order: power levels, alias, preset, initial_state, name and topic."""
        drafts: list[EventDraft] = []

        def state(event_type: str, content: dict[str, Any], state_key: str = "") -> None:
            drafts.append(EventDraft(event_type, creator, content, state_key=state_key))

        preset = PRESETS[request.preset]
        # 3. power levels, with the preset's and the request's overrides
        power_levels = default_power_levels(creator, request.version, request.preset, trusted_invitees)
        override = request.power_level_content_override or {}
        initial_pl = next(
            (s for s in request.initial_state if s.get("type") == "m.room.power_levels" and s.get("state_key", "") == ""),
            None,
        )
        power_levels.update(override)
        state("m.room.power_levels", power_levels)

        # 4. canonical alias
        if alias is not None:
            state("m.room.canonical_alias", {"alias": alias})

        # 5. preset state: join rules, history visibility, guest access
        initial_keys = {(s.get("type"), s.get("state_key", "")) for s in request.initial_state}
        if ("m.room.join_rules", "") not in initial_keys:
            state("m.room.join_rules", {"join_rule": preset["join_rule"]})
        if ("m.room.history_visibility", "") not in initial_keys:
            state("m.room.history_visibility", {"history_visibility": preset["history_visibility"]})
        if ("m.room.guest_access", "") not in initial_keys:
            state("m.room.guest_access", {"guest_access": preset["guest_access"]})

        # 6. initial_state (a power levels event there was already folded in above)
        for event in request.initial_state:
            if event is initial_pl:
                continue
            state(event["type"], event.get("content", {}), event.get("state_key", ""))
        if initial_pl is not None:
            state("m.room.power_levels", {**power_levels, **initial_pl.get("content", {}), **override})

        # 7. name and topic
        if request.name is not None:
            state("m.room.name", {"name": request.name})
        if request.topic is not None:
            state("m.room.topic", {"topic": request.topic, "m.topic": [{"mimetype": "text/plain", "body": request.topic}]})
        return drafts


def default_power_levels(
    creator: str, version: RoomVersion, preset: str, trusted_invitees: list[str]
) -> dict[str, Any]:
    users: dict[str, int] = {}
    if not version.privileged_creators:
        # Before room version 12 creators are ordinary users with power 100.
        users[creator] = 100
        for invitee in trusted_invitees:
            users[invitee] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 150 if version.privileged_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == "public_chat" else 0,
        "historical": 100,
        "notifications": {"room": 50},
    }
