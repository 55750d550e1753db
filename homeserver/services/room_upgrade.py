"""POST /rooms/{roomId}/upgrade: replace a room by a new one of another room version.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-behaviour-19 (Room Upgrades).
The steps below carry the spec's numbers. Which state moves across follows Synapse.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import Any

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.protocol import power_levels
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.room_versions import RoomVersion
from homeserver.services.membership import MembershipService
from homeserver.services.pipeline import EventDraft, EventPipeline
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore

log = logging.getLogger(__name__)

# The state Synapse carries into the replacement room (m.space.child of spaces, and
# m.space.parent, with any state key).
COPIED_STATE = (
    "m.room.join_rules", "m.room.name", "m.room.topic", "m.room.history_visibility", "m.room.guest_access",
    "m.room.avatar", "m.room.encryption", "m.room.server_acl", "m.room.canonical_alias",
)
COPIED_STATE_ANY_KEY = ("m.space.child", "m.space.parent")
# What the create event keeps of the old one.
COPIED_CREATE_KEYS = ("type", "m.federate")
# Synapse restricts talk in the old room to moderators.
RESTRICTED_LEVEL = 50
TOMBSTONE_BODY = "This room has been replaced"


class RoomUpgrader:
    def __init__(self, pipeline: EventPipeline, events: EventStore, state: StateStore, rooms: RoomStore,
                 membership: MembershipService):
        self.pipeline = pipeline
        self.events = events
        self.state = state
        self.rooms = rooms
        self.membership = membership
        # One upgrade of a room at a time: a second one waits and then finds the tombstone.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def upgrade(self, user_id: str, old_room_id: str, version: RoomVersion,
                      additional_creators: list[str] | None = None) -> str:
        """Upgrade the room; returns the replacement room's id."""
        lock = self._locks.get(old_room_id)
        if lock is None:
            lock = self._locks[old_room_id] = asyncio.Lock()
        async with lock:
            return await self._upgrade(user_id, old_room_id, version, additional_creators or [])

    async def _upgrade(self, user_id: str, old_room_id: str, version: RoomVersion,
                       additional_creators: list[str]) -> str:
        old_version = await self.events.get_room_version(old_room_id)
        if old_version is None:
            raise not_found("Unknown room")
        state = await self._current_state(old_room_id)
        member = state.get(("m.room.member", user_id))
        if member is None or member.membership != "join":
            raise forbidden("You are not joined to this room")
        if ("m.room.tombstone", "") in state:
            raise MatrixError(400, "M_BAD_STATE", "This room has already been replaced")
        if additional_creators and not version.privileged_creators:
            raise MatrixError(400, "M_INVALID_PARAM",
                              f"Room version {version.identifier} has no additional creators")
        # 1. the user may send m.room.tombstone in the old room
        auth_state = _auth_state(state)
        level = power_levels.get_user_power_level(user_id, auth_state)
        if level < power_levels.get_required_level(auth_state, "m.room.tombstone", True):
            raise forbidden("You need the power to send m.room.tombstone to upgrade this room")

        # 2.-3. the replacement room with the state that moves across
        extremities = await self.events.get_forward_extremities(old_room_id)
        drafts = self._new_room_drafts(user_id, state, version, level, additional_creators, extremities[:1])
        try:
            self.pipeline.check_new_room(version, drafts)
        except MatrixError as e:
            raise MatrixError(400, "M_INVALID_ROOM_STATE",
                              f"The room's state cannot move to room version {version.identifier}: {e.error}")
        published = bool(await self.rooms.get_visibility(old_room_id))
        create = await self.pipeline.create_room(version, drafts[0], published)
        new_room_id = create.room_id
        for draft in drafts[1:]:
            await self.pipeline.send(new_room_id, draft)

        # 4. local aliases follow the room (the canonical alias was copied above)
        for alias in await self.rooms.aliases_of_room(old_room_id):
            creator = (await self.rooms.get_alias(alias) or (None, user_id))[1]
            await self.rooms.delete_alias(alias)
            await self.rooms.create_alias(alias, new_room_id, creator)
        if published:
            await self.rooms.set_visibility(old_room_id, False)

        # 5. the tombstone
        await self.pipeline.send(old_room_id, EventDraft(
            "m.room.tombstone", user_id, {"body": TOMBSTONE_BODY, "replacement_room": new_room_id}, state_key="",
        ))
        # 6. restrict the old room; the old room's canonical alias no longer leads anywhere
        await self._restrict_old_room(user_id, old_room_id, state)
        return new_room_id

    def _new_room_drafts(self, user_id: str, state: dict[StateKey, Event], version: RoomVersion,
                         level: int | float, additional_creators: list[str], last_event: list[str],
                         ) -> list[EventDraft]:
        old_create = state[("m.room.create", "")]
        old_room_id = old_create.room_id
        create_content: dict[str, Any] = {
            key: old_create.content[key] for key in COPIED_CREATE_KEYS if key in old_create.content
        }
        create_content["room_version"] = version.identifier
        predecessor: dict[str, Any] = {"room_id": old_room_id}
        if not version.room_id_from_create_event and last_event:
            # Before v12 the predecessor names the last known event of the old room (the
            # spec makes event_id optional from v12 on, as room ids name create events).
            predecessor["event_id"] = last_event[0]
        create_content["predecessor"] = predecessor
        if not version.implicit_room_creator:
            create_content["creator"] = user_id
        creators = {user_id}
        if version.privileged_creators and additional_creators:
            create_content["additional_creators"] = list(dict.fromkeys(additional_creators))
            creators.update(additional_creators)

        drafts = [EventDraft("m.room.create", user_id, create_content, state_key="")]
        member = state[("m.room.member", user_id)]
        join_content = {k: member.content[k] for k in ("displayname", "avatar_url") if k in member.content}
        drafts.append(EventDraft("m.room.member", user_id, {"membership": "join", **join_content}, state_key=user_id))

        final_pl = self._new_power_levels(state, version, user_id, level, creators)
        # The upgrader must be able to send the copied state even where the copied levels
        # would not let them (Synapse raises them for the copy and restores the levels after).
        raised_pl = final_pl
        if not version.privileged_creators:
            needed = _highest_level(final_pl)
            if final_pl.get("users", {}).get(user_id, 0) < needed:
                raised_pl = {**final_pl, "users": {**final_pl.get("users", {}), user_id: needed}}
        drafts.append(EventDraft("m.room.power_levels", user_id, raised_pl, state_key=""))
        for key, event in sorted(state.items()):
            if key[0] in COPIED_STATE and key[1] == "" or key[0] in COPIED_STATE_ANY_KEY:
                if event.content:
                    drafts.append(EventDraft(key[0], user_id, dict(event.content), state_key=key[1]))
        # Bans carry over too.
        for key, event in sorted(state.items()):
            if key[0] == "m.room.member" and event.membership == "ban" and key[1] not in creators:
                drafts.append(EventDraft("m.room.member", user_id, {"membership": "ban"}, state_key=key[1]))
        if raised_pl is not final_pl:
            drafts.append(EventDraft("m.room.power_levels", user_id, final_pl, state_key=""))
        return drafts

    def _new_power_levels(self, state: dict[StateKey, Event], version: RoomVersion, user_id: str,
                          level: int | float, creators: set[str]) -> dict[str, Any]:
        old_pl = state.get(("m.room.power_levels", ""))
        content: dict[str, Any] = dict(old_pl.content) if old_pl is not None else {}
        users = dict(content.get("users") or {}) if isinstance(content.get("users"), dict) else {}
        old_creators = power_levels.room_creators(_auth_state(state))
        old_privileged = state[("m.room.create", "")].room_version.privileged_creators
        if old_privileged:
            # The old room's creators had unlimited power outside of "users": keep them top.
            for creator in old_creators:
                users.setdefault(creator, 100)
        if version.privileged_creators:
            # v12: creators must not be listed (their power is not a number).
            for creator in creators:
                users.pop(creator, None)
        else:
            users[user_id] = 100 if math.isinf(level) else int(level)
        content["users"] = users
        return content

    async def _restrict_old_room(self, user_id: str, room_id: str, state: dict[StateKey, Event]) -> None:
        old_pl = state.get(("m.room.power_levels", ""))
        content: dict[str, Any] = dict(old_pl.content) if old_pl is not None else {}
        changed = False
        for name in ("events_default", "invite"):
            current = content.get(name, 0)
            if not isinstance(current, int) or isinstance(current, bool) or current < RESTRICTED_LEVEL:
                content[name] = RESTRICTED_LEVEL
                changed = True
        # As Synapse: failures here leave the upgrade done (the tombstone is what counts).
        if changed:
            try:
                await self.pipeline.send(room_id, EventDraft("m.room.power_levels", user_id, content, state_key=""))
            except MatrixError as e:
                log.warning("Could not restrict the power levels of upgraded room %s: %s", room_id, e.error)
        alias_event = state.get(("m.room.canonical_alias", ""))
        if alias_event is not None and alias_event.content:
            try:
                await self.pipeline.send(room_id, EventDraft("m.room.canonical_alias", user_id, {}, state_key=""))
            except MatrixError as e:
                log.warning("Could not clear the canonical alias of upgraded room %s: %s", room_id, e.error)

    async def _current_state(self, room_id: str) -> dict[StateKey, Event]:
        ids = await self.state.get_current_state_ids(room_id)
        wanted = {
            key: event_id for key, event_id in ids.items()
            if key[0] in COPIED_STATE or key[0] in COPIED_STATE_ANY_KEY or key[0] == "m.room.member"
            or key in (("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.tombstone", ""))
        }
        loaded = await self.events.get_events(list(wanted.values()))
        return {key: loaded[event_id] for key, event_id in wanted.items() if event_id in loaded}


def _auth_state(state: dict[StateKey, Event]) -> dict[StateKey, Event]:
    return {k: state[k] for k in (("m.room.create", ""), ("m.room.power_levels", "")) if k in state}


def _highest_level(content: dict[str, Any]) -> int:
    levels = [100]
    for name in ("state_default", "events_default", "ban", "kick", "redact", "invite"):
        value = content.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            levels.append(value)
    events = content.get("events")
    if isinstance(events, dict):
        levels += [v for v in events.values() if isinstance(v, int) and not isinstance(v, bool)]
    return max(levels)
