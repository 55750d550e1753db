"""Sending messages and state, redacting, and reading a room's events and state."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.protocol.auth_rules import get_named_level, get_user_power_level
from homeserver.protocol.events import Event, StateKey
from homeserver.protocol.filters import EventFilter
from homeserver.protocol.ids import is_valid_room_alias
from homeserver.services.auth import Requester
from homeserver.services.current_state import current_state_events
from homeserver.services.event_views import EventViews
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.membership import MembershipService
from homeserver.services.pipeline import EventDraft, EventPipeline
from homeserver.services.relation_checks import RelationChecks
from homeserver.services.tokens import MIN_POSITION, pagination_token, parse_pagination_token
from homeserver.storage.events import EventFilterSql, EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamIdGenerator


@dataclasses.dataclass(frozen=True)
class RoomAccess:
    """What a user may read of a room: all of it up to now, or up to when they left."""

    membership: str
    # Stream position up to which the user may read; None means "now".
    up_to: int | None
    state_group: int | None  # state at that point (None with up_to None: use current state)


class Backfiller(Protocol):
    """Fetches a room's history from before the oldest event we have (federation/backfill.py)."""

    async def backfill(self, room_id: str, limit: int) -> bool:
        """Store up to about ``limit`` older events of the room; whether any were added."""
        ...


# Rounds of backfill one /messages page may wait for before answering with what it has.
MAX_BACKFILL_ROUNDS = 3


class RoomEventsService:
    def __init__(
        self, pipeline: EventPipeline, events: EventStore, state: StateStore, rooms: RoomStore,
        views: EventViews, membership: MembershipService, stream: StreamIdGenerator,
        relation_checks: RelationChecks | None = None, ignored_users: IgnoredUsers | None = None,
    ):
        self.relation_checks = relation_checks
        self.ignored_users = ignored_users
        self.pipeline = pipeline
        self.events = events
        self.state = state
        self.rooms = rooms
        self.views = views
        self.membership = membership
        self.stream = stream
        # Set by the federation wiring: history of rooms joined over federation lives on other servers too.
        self.backfiller: Backfiller | None = None

    # Writing

    async def send_message(
        self, requester: Requester, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> Event:
        if event_type == "m.room.redaction" and isinstance(content.get("redacts"), str):
            # From room version 11 "redacts" lives in content, so /send can carry a
            # redaction: it gets the checks of /redact (the auth rules leave them to us).
            version = await self.events.get_room_version(room_id)
            if version is not None and version.redacts_in_content:
                await self._require_joined(requester.user_id, room_id)
                await self._check_may_redact(requester.user_id, room_id, content["redacts"])
        if self.relation_checks is not None:
            await self.relation_checks.check(room_id, requester, event_type, content, txn_id)
        draft = EventDraft(event_type, requester.user_id, content, txn=(requester.device_id, txn_id))
        return await self.pipeline.send(room_id, draft)

    async def set_state(
        self, requester: Requester, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> Event:
        if event_type == "m.room.member":
            # Membership changes through the state API still follow the membership rules.
            await self._require_room(room_id)
        if event_type == "m.room.canonical_alias":
            await self._check_canonical_alias(room_id, content)
        current_id = await self.state.get_current_state_event_id(room_id, event_type, state_key)
        if current_id is not None:
            current = await self.events.get_event(current_id)
            if current is not None and current.sender == requester.user_id and dict(current.content) == content:
                return current  # unchanged: no new event (as Synapse does)
        draft = EventDraft(event_type, requester.user_id, content, state_key=state_key)
        return await self.pipeline.send(room_id, draft)

    async def redact(
        self, requester: Requester, room_id: str, event_id: str, reason: str | None, txn_id: str
    ) -> Event:
        await self._require_joined(requester.user_id, room_id)
        await self._check_may_redact(requester.user_id, room_id, event_id)
        content: dict[str, Any] = {"reason": reason} if reason else {}
        version = await self.events.get_room_version(room_id)
        if version is not None and version.redacts_in_content:
            content["redacts"] = event_id
        draft = EventDraft(
            "m.room.redaction", requester.user_id, content, redacts=event_id,
            txn=(requester.device_id, txn_id),
        )
        return await self.pipeline.send(room_id, draft)

    async def _check_may_redact(self, user_id: str, room_id: str, event_id: str) -> None:
        """Anyone may redact their own events; others' and unknown ones need the redact level.

        Since room version 3 the auth rules accept any redaction and leave to the
        server whether to apply it (spec: rooms/v3 "Handling redactions"), so a
        local user's redaction is checked here, before it is sent.
        """
        target = await self.events.get_event(event_id)
        if target is not None and target.room_id != room_id:
            raise invalid_param("Cannot redact an event of another room")
        if target is not None and target.sender == user_id:
            return
        state = await self._current_auth_state(room_id, user_id)
        if get_user_power_level(user_id, state) < get_named_level(state, "redact", 50):
            if target is None:
                raise not_found("Unknown event")
            raise forbidden("You may not redact other users' events")

    # Reading

    async def access(self, user_id: str, room_id: str) -> RoomAccess:
        """Whether and how far the user may read the room; M_FORBIDDEN if not at all."""
        current = await self.state.get_membership(room_id, user_id)
        if current is None:
            await self._require_room(room_id, forbidden_if_missing=True)
            raise forbidden("You are not a member of this room")
        membership, event_id = current
        if membership == "join":
            return RoomAccess("join", None, None)
        if membership in ("leave", "ban"):
            event = await self.events.get_event(event_id)
            if event is not None:
                return RoomAccess(membership, event.internal["stream_ordering"], event.internal["state_group_after"])
        raise forbidden("You are not a member of this room")

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> dict[str, Any]:
        access = await self.access(requester.user_id, room_id)
        event = await self.events.get_event(event_id)
        if event is None or event.room_id != room_id or event.internal.get("rejected"):
            raise not_found("Event not found")
        if _from_ignored(event, await self._ignored(requester.user_id)):
            raise not_found("Event not found")
        visible = await self.views.visible_to(requester.user_id, [event], access.membership == "join")
        if not visible:
            raise not_found("Event not found")
        return (await self.views.serialize(visible, (requester.user_id, requester.device_id)))[0]

    async def state_map(self, requester: Requester, room_id: str) -> dict[StateKey, str]:
        access = await self.access(requester.user_id, room_id)
        if access.up_to is None:
            return await self.state.get_current_state_ids(room_id)
        return dict(await self.state.get_state(access.state_group))

    async def get_state(self, requester: Requester, room_id: str) -> list[dict[str, Any]]:
        state = await self.state_map(requester, room_id)
        loaded = await self.events.get_events(state.values())
        return await self.views.serialize(loaded[i] for i in state.values() if i in loaded)

    async def get_state_event(self, requester: Requester, room_id: str, event_type: str, state_key: str) -> Event:
        state = await self.state_map(requester, room_id)
        event_id = state.get((event_type, state_key))
        event = await self.events.get_event(event_id) if event_id else None
        if event is None:
            raise not_found("Event not found")
        return event

    async def members(
        self, requester: Requester, room_id: str, membership: str | None, not_membership: str | None,
        at: str | None,
    ) -> list[dict[str, Any]]:
        state = await self.state_map(requester, room_id)
        if at is not None:
            position = parse_pagination_token(at)
            access = await self.access(requester.user_id, room_id)
            if access.up_to is not None:
                # A user who left sees nothing after leaving.
                position = min(position, access.up_to)
            found = await self.events.last_event_at(room_id, position)
            # A point before the room's first event had no members at all.
            state = dict(await self.state.get_state(found[1])) if found is not None else {}
        member_ids = [eid for (t, _), eid in state.items() if t == "m.room.member"]
        loaded = await self.events.get_events(member_ids)
        chosen = []
        for event_id in member_ids:
            event = loaded.get(event_id)
            if event is None:
                continue
            if membership is not None and event.membership != membership:
                continue
            if not_membership is not None and event.membership == not_membership:
                continue
            chosen.append(event)
        return await self.views.serialize(chosen)

    async def joined_members(self, requester: Requester, room_id: str) -> dict[str, dict[str, Any]]:
        await self._require_joined(requester.user_id, room_id)
        state = await self.state.get_current_state_ids(room_id)
        member_ids = [eid for (t, _), eid in state.items() if t == "m.room.member"]
        loaded = await self.events.get_events(member_ids)
        out = {}
        for event in loaded.values():
            if event.membership == "join":
                out[event.state_key] = {
                    "display_name": event.content.get("displayname"),
                    "avatar_url": event.content.get("avatar_url"),
                }
        return out

    async def messages(
        self, requester: Requester, room_id: str, from_token: str | None, to_token: str | None,
        backwards: bool, limit: int, event_filter: EventFilter,
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/messages. Spec: client-server-api/#get_matrixclientv3roomsroomidmessages"""
        access = await self.access(requester.user_id, room_id)
        ignored = await self._ignored(requester.user_id)
        ceiling = access.up_to if access.up_to is not None else self.stream.current()
        if from_token is not None:
            start = parse_pagination_token(from_token)
        else:
            start = ceiling if backwards else MIN_POSITION
        end_bound = parse_pagination_token(to_token) if to_token is not None else None
        sql_filter = EventFilterSql(
            types=event_filter.types, not_types=event_filter.not_types,
            senders=event_filter.senders, not_senders=event_filter.not_senders,
            ignored_senders=tuple(ignored),
        )
        if backwards:
            upper = min(start, ceiling)
            lower = end_bound if end_bound is not None else MIN_POSITION
        else:
            lower = start
            upper = min(end_bound, ceiling) if end_bound is not None else ceiling
        # One more than asked tells whether anything lies beyond this page: the spec
        # leaves out `end` when nothing does.
        ids = await self.events.room_event_ids(
            room_id, lower, upper, limit + 1, newest_first=backwards, event_filter=sql_filter
        )
        has_more = len(ids) > limit
        if backwards and not has_more and self.backfiller is not None:
            # Past the oldest event we have: the rest of the history may be on other
            # servers of the room. Backfilled events get positions below every one
            # we had, so the same query, run again, finds them next in this page.
            added = False
            for _ in range(MAX_BACKFILL_ROUNDS):
                added = await self.backfiller.backfill(room_id, limit + 1 - len(ids))
                if not added:
                    break
                ids = await self.events.room_event_ids(
                    room_id, lower, upper, limit + 1, newest_first=True, event_filter=sql_filter
                )
                if len(ids) > limit:
                    break
            # The last round brought events: more may follow, so the client is given an `end`.
            has_more = len(ids) > limit or (added and bool(ids))
        ids = ids[:limit]
        loaded = await self.events.get_events(ids)
        chunk_events = [loaded[i] for i in ids if i in loaded]
        visible = await self.views.visible_to(requester.user_id, chunk_events, access.membership == "join")
        visible = [e for e in visible if event_filter.allows(e)]
        result: dict[str, Any] = {
            "start": from_token if from_token is not None else pagination_token(start),
            "chunk": await self.views.serialize(visible, (requester.user_id, requester.device_id)),
        }
        if has_more and ids[-1] in loaded:
            last = loaded[ids[-1]].internal["stream_ordering"]
            result["end"] = pagination_token(last - 1 if backwards else last)
        if event_filter.lazy_load_members and visible:
            result["state"] = await self._member_state_for(visible, requester.user_id)
        return result

    async def context(
        self, requester: Requester, room_id: str, event_id: str, limit: int, event_filter: EventFilter
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/context/{eventId}."""
        access = await self.access(requester.user_id, room_id)
        event = await self.events.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise not_found("Event not found")
        joined = access.membership == "join"
        position = event.internal["stream_ordering"]
        ceiling = access.up_to if access.up_to is not None else self.stream.current()
        ignored = await self._ignored(requester.user_id)
        # As in /messages, a former member reads nothing after they left.
        if position > ceiling or _from_ignored(event, ignored) or not await self.views.visible_to(
                requester.user_id, [event], joined):
            raise not_found("Event not found")
        sql_filter = EventFilterSql(
            types=event_filter.types, not_types=event_filter.not_types,
            senders=event_filter.senders, not_senders=event_filter.not_senders,
            ignored_senders=tuple(ignored),
        )
        before_count = limit // 2
        after_count = limit - before_count
        before_ids = await self.events.room_event_ids(
            room_id, MIN_POSITION, position - 1, before_count, True, sql_filter)
        after_ids = await self.events.room_event_ids(room_id, position, ceiling, after_count, False, sql_filter)
        loaded = await self.events.get_events(before_ids + after_ids)
        before = await self.views.visible_to(requester.user_id, [loaded[i] for i in before_ids if i in loaded], joined)
        after = await self.views.visible_to(requester.user_id, [loaded[i] for i in after_ids if i in loaded], joined)
        start = loaded[before_ids[-1]].internal["stream_ordering"] - 1 if before_ids else position - 1
        end = loaded[after_ids[-1]].internal["stream_ordering"] if after_ids else position
        # Spec: "the state of the room at the last event returned".
        last = after[-1] if after else event
        state_ids = await self.state.get_state(last.internal["state_group_after"])
        if event_filter.lazy_load_members:
            senders = {e.sender for e in before + after + [event]}
            state_ids = {k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders}
        state_events = await self.events.get_events(state_ids.values())
        for_device = (requester.user_id, requester.device_id)
        return {
            "event": (await self.views.serialize([event], for_device))[0],
            "events_before": await self.views.serialize(before, for_device),
            "events_after": await self.views.serialize(after, for_device),
            "start": pagination_token(start),
            "end": pagination_token(end),
            "state": await self.views.serialize(state_events[i] for i in state_ids.values() if i in state_events),
        }

    async def _member_state_for(self, events: list[Event], user_id: str) -> list[dict[str, Any]]:
        """Lazy-loaded members: each sender's membership as of their event in the chunk.

        One state for the whole chunk would miss senders who joined within it when the
        filter leaves their join out of the chunk.
        """
        member_ids: dict[str, str] = {}
        for user, event in [*((e.sender, e) for e in events), (user_id, events[0])]:
            if user in member_ids:
                continue
            state = await self.state.get_state(event.internal.get("state_group_before"))
            if ("m.room.member", user) in state:
                member_ids[user] = state[("m.room.member", user)]
        loaded = await self.events.get_events(member_ids.values())
        return await self.views.serialize(loaded[i] for i in member_ids.values() if i in loaded)

    async def _ignored(self, user_id: str) -> frozenset[str]:
        return await self.ignored_users.ignored_by(user_id) if self.ignored_users is not None else frozenset()

    async def _current_auth_state(self, room_id: str, user_id: str) -> dict[StateKey, Event]:
        keys = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", user_id)]
        return await current_state_events(self.state, self.events, room_id, keys)

    async def _require_joined(self, user_id: str, room_id: str) -> None:
        current = await self.state.get_membership(room_id, user_id)
        if current is None or current[0] != "join":
            await self._require_room(room_id, forbidden_if_missing=True)
            raise forbidden("You are not joined to this room")

    async def _require_room(self, room_id: str, forbidden_if_missing: bool = False) -> None:
        if not await self.rooms.room_exists(room_id):
            if forbidden_if_missing:
                # As Synapse: do not reveal whether a room exists to non-members.
                raise forbidden("You are not a member of this room")
            raise not_found("Unknown room")

    async def _check_canonical_alias(self, room_id: str, content: dict[str, Any]) -> None:
        aliases = []
        if content.get("alias") is not None:
            aliases.append(content["alias"])
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise invalid_param("alt_aliases must be a list")
        aliases.extend(alt)
        # Syntax first (M_INVALID_PARAM), then where each alias points (M_BAD_ALIAS), as the spec orders them.
        for alias in aliases:
            if not isinstance(alias, str) or not is_valid_room_alias(alias):
                raise invalid_param(f"{alias!r} is not a valid room alias")
        for alias in aliases:
            found = await self.rooms.get_alias(alias)
            if found is None or found[0] != room_id:
                raise MatrixError(400, "M_BAD_ALIAS", f"{alias} does not point to this room")


def _from_ignored(event: Event, ignored: frozenset[str]) -> bool:
    """An ignored user's event that is hidden: state events are always shown (spec)."""
    return event.sender in ignored and event.state_key is None
