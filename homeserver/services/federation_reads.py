"""What other servers may read of our rooms: events, state, auth chains, history.

Spec: https://spec.matrix.org/v1.19/server-server-api/ (sections "Retrieving events",
"Backfilling and retrieving missing events", "Timestamp to event").

Every room read is refused (403 M_FORBIDDEN) unless the requesting server has a
joined member in the room and the room's server ACL allows it. History
visibility then applies per event, as for clients but by server (spec
client-server-api/#server-behaviour-5, and Synapse's filter_events_for_server):
an event of a room whose visibility was "invited" or "joined" is visible to a
server only if one of its users was invited (for "invited") or joined in the
state at the event. Events a server may not see are served in their redacted
form, which keeps their place in the DAG and still verifies.

Events are served as stored: the JSON the event was signed and persisted as,
never rebuilt from a model; redacted events in their redacted form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection, Iterable

from homeserver.errors import forbidden, not_found
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.redaction import redact_event
from homeserver.services.server_acl import acl_allows
from homeserver.storage.event_graph import EventGraphStore
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore

if TYPE_CHECKING:
    from homeserver.services.container import Services

JsonDict = dict[str, Any]

MAX_BACKFILL = 100
DEFAULT_MISSING_EVENTS = 10
MAX_MISSING_EVENTS = 20

_HISTORY_VISIBILITY: StateKey = ("m.room.history_visibility", "")
_OPEN_VISIBILITIES = ("world_readable", "shared")
_KNOWN_VISIBILITIES = ("world_readable", "shared", "invited", "joined")


def _visibility(content: Any) -> str:
    # Spec: no value, or one not understood, is "shared".
    value = content.get("history_visibility") if isinstance(content, dict) else None
    return value if value in _KNOWN_VISIBILITIES else "shared"


def _server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def pdu(event: Event) -> JsonDict:
    """The event as stored, or its redacted form once redacted. Never modify the result."""
    if event.internal.get("redacted_by"):
        return redact_event(event.json, event.room_version)
    return event.json


class FederationReads:
    def __init__(self, server_name: str, events: EventStore, state: StateStore, graph: EventGraphStore):
        self.server_name = server_name
        self.events = events
        self.state = state
        self.graph = graph

    @classmethod
    def wired(cls, services: Services) -> FederationReads:
        """On the container's stores (federation/serving.py builds it when it mounts the routes)."""
        graph = EventGraphStore(services.db, services.state)
        return cls(services.server_name, services.events, services.state, graph)

    # Access

    async def check_room_access(self, origin: str, room_id: str) -> None:
        """403 unless the room's ACL allows ``origin`` and one of its users is joined.

        An unknown room is answered the same way, as Synapse does, so that a server
        outside a room learns nothing of it.
        """
        if not await acl_allows(self.state, self.events, room_id, origin):
            raise forbidden("Server is banned from this room by its server ACL")
        if not await self.graph.server_in_room(room_id, origin):
            raise forbidden("Host not in room")

    async def _room_event(self, origin: str, room_id: str, event_id: str) -> Event:
        """An accepted event of the room, after the access check (404 if unknown here)."""
        await self.check_room_access(origin, room_id)
        event = await self.events.get_event(event_id)
        if event is None or event.room_id != room_id or event.internal.get("rejected"):
            raise not_found("Event not found")
        return event

    # GET /event/{eventId}

    async def event(self, origin: str, event_id: str) -> JsonDict:
        event = await self.events.get_event(event_id)
        if event is None or event.internal.get("rejected"):
            raise not_found("Event not found")
        await self.check_room_access(origin, event.room_id)
        return (await self.pdus_for_server(origin, [event]))[0]

    # GET /state/{roomId} and /state_ids/{roomId}

    async def state_ids_at(self, origin: str, room_id: str, event_id: str) -> tuple[list[str], list[str]]:
        """(state event ids before the event, the ids of their full auth chain)."""
        await self._room_event(origin, room_id, event_id)
        state = await self.graph.state_before(event_id)
        if state is None:
            # An outlier: we hold no state at it that we could vouch for.
            raise not_found("No state known at this event")
        state_ids = sorted(state.values())
        auth_chain = await self.graph.auth_chain_ids(state_ids)
        return state_ids, sorted(auth_chain)

    async def state_at(self, origin: str, room_id: str, event_id: str) -> tuple[list[JsonDict], list[JsonDict]]:
        state_ids, auth_ids = await self.state_ids_at(origin, room_id, event_id)
        return await self._pdus_by_id(state_ids), await self._pdus_by_id(auth_ids)

    # GET /event_auth/{roomId}/{eventId}

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> list[JsonDict]:
        await self._room_event(origin, room_id, event_id)
        return await self._pdus_by_id(sorted(await self.graph.auth_chain_ids([event_id])))

    # GET /backfill/{roomId}

    async def backfill(self, origin: str, room_id: str, from_ids: Collection[str], limit: int) -> list[JsonDict]:
        await self.check_room_access(origin, room_id)
        event_ids = await self.graph.backfill_ids(room_id, list(from_ids), min(limit, MAX_BACKFILL))
        return await self.pdus_for_server(origin, await self._events_in_order(event_ids))

    # POST /get_missing_events/{roomId}

    async def missing_events(
        self, origin: str, room_id: str, earliest: Collection[str], latest: Collection[str],
        limit: int, min_depth: int,
    ) -> list[JsonDict]:
        await self.check_room_access(origin, room_id)
        event_ids = await self.graph.missing_event_ids(
            room_id, earliest, latest, max(0, min(limit, MAX_MISSING_EVENTS)), min_depth
        )
        return await self.pdus_for_server(origin, await self._events_in_order(event_ids))

    # GET /timestamp_to_event/{roomId}

    async def timestamp_to_event(self, origin: str, room_id: str, ts: int, forwards: bool) -> JsonDict:
        await self.check_room_access(origin, room_id)
        found = await self.graph.event_at_timestamp(room_id, ts, forwards)
        if found is None:
            raise not_found(f"No event found {'after' if forwards else 'before'} {ts} in {room_id}")
        return {"event_id": found[0], "origin_server_ts": found[1]}

    # History visibility for servers

    async def pdus_for_server(self, origin: str, events: list[Event]) -> list[JsonDict]:
        """The events as ``origin`` may see them: whole, or redacted where it may not."""
        groups = {g for e in events if (g := e.internal.get("state_group_before")) is not None}
        states = {g: await self.state.get_state(g) for g in groups}
        hv_ids = {g: state.get(_HISTORY_VISIBILITY) for g, state in states.items()}
        loaded = await self.events.get_events({i for i in hv_ids.values() if i})
        # The origin's memberships matter only where the visibility is restricted;
        # finding them means reading the whole state, so only there.
        restricted = {
            g for g in groups
            if _visibility(loaded[hv_ids[g]].content if hv_ids[g] in loaded else {}) not in _OPEN_VISIBILITIES
        }
        members = {
            g: [eid for (t, k), eid in states[g].items() if t == "m.room.member" and _server_of(k) == origin]
            for g in restricted
        }
        loaded.update(await self.events.get_events({m for ms in members.values() for m in ms}))
        out = []
        for event in events:
            group = event.internal.get("state_group_before")
            if group is None or self._visible(origin, event, hv_ids[group], members.get(group, []), loaded):
                out.append(pdu(event))
            else:
                out.append(redact_event(event.json, event.room_version))
        return out

    @staticmethod
    def _visible(origin: str, event: Event, hv_id: str | None, member_ids: list[str], loaded: dict[str, Event]) -> bool:
        hv_event = loaded.get(hv_id) if hv_id else None
        visibilities = {_visibility(hv_event.content if hv_event else {})}
        memberships = {loaded[m].membership for m in member_ids if m in loaded}
        # As for users: a visibility change, and a membership change of one of the
        # server's users, may be seen if the state before *or* after it allows it.
        if event.type == "m.room.history_visibility" and event.state_key == "":
            visibilities.add(_visibility(event.content))
        if event.type == "m.room.member" and event.state_key and _server_of(event.state_key) == origin:
            memberships.add(event.membership)
        if visibilities & set(_OPEN_VISIBILITIES) or "join" in memberships:
            return True
        return "invited" in visibilities and "invite" in memberships

    # Loading

    async def _events_in_order(self, event_ids: list[str]) -> list[Event]:
        loaded = await self.events.get_events(event_ids)
        return [loaded[i] for i in event_ids if i in loaded]

    async def _pdus_by_id(self, event_ids: Iterable[str]) -> list[JsonDict]:
        return [pdu(e) for e in await self._events_in_order(list(event_ids))]

