"""Looking at a room from outside its timeline: its summary (MSC3266), the event at a
time, and the rooms two users share (MSC2666).

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidtimestamp_to_event
MSC3266: https://github.com/matrix-org/matrix-spec-proposals/pull/3266
MSC2666: https://github.com/matrix-org/matrix-spec-proposals/pull/2666
"""

from __future__ import annotations

from typing import Any, Iterable

from homeserver.errors import forbidden, not_found
from homeserver.protocol.events import Event, StateKey
from homeserver.services.membership import MembershipService
from homeserver.storage.event_graph import EventGraphStore
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore

SUMMARY_STATE = (
    "m.room.create", "m.room.name", "m.room.topic", "m.room.avatar", "m.room.canonical_alias",
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.encryption",
)
# Rooms anyone may preview by their join rule (they could knock or join).
PREVIEWABLE_JOIN_RULES = ("public", "knock", "knock_restricted")
RESTRICTED_JOIN_RULES = ("restricted", "knock_restricted")
# Synapse's page size for mutual rooms.
MUTUAL_ROOMS_PAGE = 100


class RoomSummaryService:
    def __init__(self, membership: MembershipService, rooms: RoomStore, events: EventStore, state: StateStore,
                 graph: EventGraphStore):
        self.membership = membership
        self.rooms = rooms
        self.events = events
        self.state = state
        self.graph = graph

    async def summary(self, user_id: str | None, room_id_or_alias: str, via: Iterable[str] = ()) -> dict[str, Any]:
        """The room's summary, for a room the user may preview; 404 for any other (so that
        a private room's existence is not given away)."""
        room_id, _servers = await self.membership.resolve_room_and_servers(room_id_or_alias, via)
        if not await self._resident(room_id):
            # Summaries of rooms this server is not in would need federation's /hierarchy.
            raise not_found("Room not found or not accessible")
        keys = [(t, "") for t in SUMMARY_STATE]
        ids = await self.state.get_current_state_ids_for(room_id, keys)
        loaded = await self.events.get_events(ids.values())
        state = {key: loaded[i] for key, i in ids.items() if i in loaded}
        membership = None
        if user_id is not None:
            found = await self.state.get_membership(room_id, user_id)
            membership = found[0] if found is not None else None
        if not await self._may_preview(user_id, membership, state):
            raise not_found("Room not found or not accessible")

        def field(event_type: str, key: str) -> Any:
            event = state.get((event_type, ""))
            value = event.content.get(key) if event is not None else None
            return value if isinstance(value, str) and value else None

        create = state.get(("m.room.create", ""))
        summary: dict[str, Any] = {
            "room_id": room_id,
            "num_joined_members": len(await self.state.get_members(room_id, "join")),
            "join_rule": field("m.room.join_rules", "join_rule") or "invite",
            "guest_can_join": field("m.room.guest_access", "guest_access") == "can_join",
            "world_readable": field("m.room.history_visibility", "history_visibility") == "world_readable",
            "room_version": create.room_version.identifier if create is not None else None,
        }
        for name, event_type, key in (
            ("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
            ("avatar_url", "m.room.avatar", "url"), ("canonical_alias", "m.room.canonical_alias", "alias"),
            ("room_type", "m.room.create", "type"), ("encryption", "m.room.encryption", "algorithm"),
        ):
            value = field(event_type, key)
            if value is not None:
                summary[name] = value
        # MSC3266 names the encryption field with its unstable prefix too (Element reads either).
        if "encryption" in summary:
            summary["im.nheko.summary.encryption"] = summary["encryption"]
        if summary["join_rule"] in RESTRICTED_JOIN_RULES:
            summary["allowed_room_ids"] = _allowed_rooms(state.get(("m.room.join_rules", "")))
        summary["membership"] = membership or "leave"
        return summary

    async def _may_preview(self, user_id: str | None, membership: str | None,
                           state: dict[StateKey, Event]) -> bool:
        if membership in ("join", "invite", "knock"):
            return True
        join_rules = state.get(("m.room.join_rules", ""))
        rule = join_rules.content.get("join_rule") if join_rules is not None else None
        if rule in PREVIEWABLE_JOIN_RULES:
            return True
        visibility = state.get(("m.room.history_visibility", ""))
        if visibility is not None and visibility.content.get("history_visibility") == "world_readable":
            return True
        if rule in RESTRICTED_JOIN_RULES and user_id is not None:
            for allowed in _allowed_rooms(join_rules):
                found = await self.state.get_membership(allowed, user_id)
                if found is not None and found[0] == "join":
                    return True
        return False

    async def event_at_timestamp(self, user_id: str, room_id: str, ts: int, forwards: bool) -> dict[str, Any]:
        """The event closest to ``ts`` in this server's copy of the room (dir f: at or after it)."""
        if not await self.rooms.room_exists(room_id):
            raise not_found("Unknown room")
        found = await self.state.get_membership(room_id, user_id)
        if found is None or found[0] != "join":
            visibility_id = await self.state.get_current_state_event_id(room_id, "m.room.history_visibility", "")
            visibility = await self.events.get_event(visibility_id) if visibility_id else None
            if visibility is None or visibility.content.get("history_visibility") != "world_readable":
                raise forbidden("You are not joined to this room")
        event = await self.graph.event_at_timestamp(room_id, ts, forwards)
        if event is None:
            raise not_found(f"No event found {'after' if forwards else 'before'} {ts} in this room")
        return {"event_id": event[0], "origin_server_ts": event[1]}

    async def mutual_rooms(self, user_id: str, other: str, after: str | None) -> tuple[list[str], str | None]:
        """Rooms both users are joined to, in room id order, a page at a time; the token is the
        last room id of the page."""
        mine = await self.state.get_rooms_for_user(user_id)
        theirs = await self.state.get_rooms_for_user(other)
        shared = sorted(
            r for r, (m, _) in mine.items() if m == "join" and theirs.get(r, ("", ""))[0] == "join"
            and (after is None or r > after)
        )
        page = shared[:MUTUAL_ROOMS_PAGE]
        return page, page[-1] if len(shared) > MUTUAL_ROOMS_PAGE else None

    async def _resident(self, room_id: str) -> bool:
        if not await self.rooms.room_exists(room_id):
            return False
        return await self.events.get_forward_extremities(room_id) != []


def _allowed_rooms(join_rules: Event | None) -> list[str]:
    allow = join_rules.content.get("allow") if join_rules is not None else None
    if not isinstance(allow, list):
        return []
    return [
        entry["room_id"] for entry in allow
        if isinstance(entry, dict) and entry.get("type") == "m.room_membership" and isinstance(entry.get("room_id"), str)
    ]
