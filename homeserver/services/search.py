"""Server-side search of room events: POST /search.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-search

Searched are the rooms the user is joined to now, and in them only the events the history
visibility rules let the user see (EventViews.visible_to, as /messages). The server can
only search what it can read: in encrypted rooms messages are m.room.encrypted and are
never found (docs/search.md).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import re
from typing import Any

from homeserver.errors import invalid_param
from homeserver.protocol.events import Event
from homeserver.protocol.filters import EventFilter
from homeserver.services.auth import Requester
from homeserver.services.event_views import EventViews
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.tokens import MIN_POSITION, pagination_token
from homeserver.storage.events import EventFilterSql, EventStore
from homeserver.storage.search import SEARCHABLE_TYPES, SearchCursor, SearchHit, SearchQuery, SearchStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamIdGenerator

SEARCH_KEYS = tuple(SEARCHABLE_TYPES.values())
GROUP_KEYS = ("room_id", "sender")
DEFAULT_LIMIT = 10  # as Synapse
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5  # the spec's default before_limit and after_limit
MAX_CONTEXT = 100
# Pages of hits read for one answer when history visibility hides many of them; past that
# the answer is short and next_batch goes on from where the reading stopped.
MAX_ROUNDS = 5


@dataclasses.dataclass(frozen=True)
class EventContextSpec:
    before_limit: int = DEFAULT_CONTEXT
    after_limit: int = DEFAULT_CONTEXT
    include_profile: bool = False


@dataclasses.dataclass(frozen=True)
class RoomEventsSearch:
    """A validated search_categories.room_events criteria object."""

    search_term: str
    keys: tuple[str, ...] = SEARCH_KEYS
    event_filter: EventFilter = EventFilter()
    order_by_rank: bool = True
    event_context: EventContextSpec | None = None
    group_by: tuple[str, ...] = ()
    include_state: bool = False


class SearchService:
    def __init__(
        self, store: SearchStore, events: EventStore, state: StateStore, views: EventViews,
        stream: StreamIdGenerator, ignored_users: IgnoredUsers | None = None,
    ):
        self.store = store
        self.events = events
        self.state = state
        self.views = views
        self.stream = stream
        self.ignored_users = ignored_users

    async def search_room_events(
        self, requester: Requester, criteria: RoomEventsSearch, next_batch: str | None
    ) -> dict[str, Any]:
        """The room_events category of a /search answer."""
        after = parse_next_batch(next_batch, criteria.order_by_rank) if next_batch is not None else None
        user_id = requester.user_id
        event_filter = criteria.event_filter
        memberships = await self.state.get_rooms_for_user(user_id)
        rooms = sorted(r for r, (m, _) in memberships.items() if m == "join" and event_filter.allows_room(r))
        types = [t for t, key in SEARCHABLE_TYPES.items() if key in criteria.keys and event_filter.allows_type(t)]
        highlights = search_words(criteria.search_term)
        empty: dict[str, Any] = {"results": [], "count": 0, "highlights": highlights}
        if not rooms or not types or not highlights:
            return empty
        ignored = await self.ignored_users.ignored_by(user_id) if self.ignored_users is not None else frozenset()
        query = SearchQuery(
            term=criteria.search_term, room_ids=rooms, types=types,
            senders=event_filter.senders, not_senders=event_filter.not_senders,
            ignored_senders=tuple(ignored), order_by_rank=criteria.order_by_rank,
        )
        limit = min(event_filter.limit or DEFAULT_LIMIT, MAX_LIMIT)
        # The count reads every match: on a common word it costs as much as the page, so
        # the two run at once, on two connections.
        (found, cursor, more), count = await asyncio.gather(
            self._visible_page(user_id, query, event_filter, after, limit), self.store.count(query))

        for_device = (user_id, requester.device_id)
        serialized = await self.views.serialize([e for e, _ in found], for_device)
        results = []
        for (event, hit), client in zip(found, serialized):
            result: dict[str, Any] = {"rank": hit.rank, "result": client}
            if criteria.event_context is not None:
                result["context"] = await self._context(user_id, for_device, event, criteria.event_context, ignored)
            results.append(result)
        answer: dict[str, Any] = {
            "results": results,
            "count": count,
            "highlights": highlights,
        }
        if more and cursor is not None:
            answer["next_batch"] = format_next_batch(cursor, criteria.order_by_rank)
        if criteria.group_by:
            answer["groups"] = _groups([e for e, _ in found], criteria.group_by, answer.get("next_batch"))
        if criteria.include_state:
            answer["state"] = await self._room_states({e.room_id for e, _ in found})
        return answer

    async def _visible_page(
        self, user_id: str, query: SearchQuery, event_filter: EventFilter, after: SearchCursor | None, limit: int
    ) -> tuple[list[tuple[Event, SearchHit]], SearchCursor | None, bool]:
        """Up to ``limit`` hits the user may see, the cursor of the last hit read, whether more may follow."""
        found: list[tuple[Event, SearchHit]] = []
        cursor = after
        batch = limit + 1
        for _ in range(MAX_ROUNDS):
            hits = await self.store.search(query, cursor, batch)
            visible = await self._visible(user_id, hits, event_filter)
            for index, hit in enumerate(hits):
                cursor = hit.cursor
                if hit.event_id in visible:
                    found.append((visible[hit.event_id], hit))
                    if len(found) == limit:
                        return found, cursor, index < len(hits) - 1 or len(hits) == batch
            if len(hits) < batch:
                return found, cursor, False
        return found, cursor, True

    async def _visible(self, user_id: str, hits: list[SearchHit], event_filter: EventFilter) -> dict[str, Event]:
        loaded = await self.events.get_events(h.event_id for h in hits)
        by_room: dict[str, list[Event]] = {}
        for hit in hits:
            event = loaded.get(hit.event_id)
            # The filter's other fields (contains_url, wildcard not_types) are checked here.
            if event is not None and event_filter.allows(event):
                by_room.setdefault(event.room_id, []).append(event)
        visible: dict[str, Event] = {}
        for room_events in by_room.values():
            for event in await self.views.visible_to(user_id, room_events, currently_joined=True):
                visible[event.event_id] = event
        return visible

    async def _context(
        self, user_id: str, for_device: tuple[str, str], event: Event, spec: EventContextSpec,
        ignored: frozenset[str],
    ) -> dict[str, Any]:
        """The events around a result, as /context gives them (spec: "event_context")."""
        room_id = event.room_id
        position = event.internal["stream_ordering"]
        sql_filter = EventFilterSql(ignored_senders=tuple(ignored))
        before_ids = await self.events.room_event_ids(
            room_id, MIN_POSITION, position - 1, spec.before_limit, True, sql_filter) if spec.before_limit else []
        after_ids = await self.events.room_event_ids(
            room_id, position, self.stream.current(), spec.after_limit, False, sql_filter) if spec.after_limit else []
        loaded = await self.events.get_events(before_ids + after_ids)
        before = await self.views.visible_to(user_id, [loaded[i] for i in before_ids if i in loaded], True)
        after = await self.views.visible_to(user_id, [loaded[i] for i in after_ids if i in loaded], True)
        start = loaded[before_ids[-1]].internal["stream_ordering"] - 1 if before_ids else position - 1
        end = loaded[after_ids[-1]].internal["stream_ordering"] if after_ids else position
        context: dict[str, Any] = {
            "events_before": await self.views.serialize(before, for_device),
            "events_after": await self.views.serialize(after, for_device),
            "start": pagination_token(start),
            "end": pagination_token(end),
        }
        if spec.include_profile:
            context["profile_info"] = await self._profiles(after[-1] if after else event, before + [event] + after)
        return context

    async def _profiles(self, last: Event, events: list[Event]) -> dict[str, dict[str, Any]]:
        """The senders' display names and avatars in the room's state at the last event shown."""
        state = await self.state.get_state(last.internal.get("state_group_after"))
        senders = {e.sender for e in events}
        member_ids = {s: state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state}
        loaded = await self.events.get_events(member_ids.values())
        profiles = {}
        for sender, event_id in member_ids.items():
            member = loaded.get(event_id)
            if member is None:
                continue
            profile = {}
            for key in ("displayname", "avatar_url"):
                if isinstance(member.content.get(key), str):
                    profile[key] = member.content[key]
            profiles[sender] = profile
        return profiles

    async def _room_states(self, room_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for room_id in sorted(room_ids):
            state = await self.state.get_current_state_ids(room_id)
            loaded = await self.events.get_events(state.values())
            out[room_id] = await self.views.serialize(loaded[i] for i in state.values() if i in loaded)
        return out


def _groups(events: list[Event], group_by: tuple[str, ...], next_batch: str | None) -> dict[str, Any]:
    """Results grouped by room or sender; ``order`` is where the group's first result stands."""
    groups: dict[str, dict[str, Any]] = {}
    for key in group_by:
        grouped: dict[str, dict[str, Any]] = {}
        for event in events:
            value = event.room_id if key == "room_id" else event.sender
            group = grouped.setdefault(value, {"results": [], "order": len(grouped) + 1})
            group["results"].append(event.event_id)
        if next_batch is not None:
            for group in grouped.values():
                group["next_batch"] = next_batch
        groups[key] = grouped
    return groups


_WORD = re.compile(r"\w+")


def search_words(term: str) -> list[str]:
    """The words a search term looks for, as websearch_to_tsquery reads it with the 'simple'
    configuration (lower case, no stemming): words after '-' are excluded, not sought, and a
    bare ``or`` is an operator."""
    words: list[str] = []
    for quoted, bare in re.findall(r'"([^"]*)"?|(\S+)', term):
        if bare:
            if bare.lower() == "or" or bare.startswith("-"):
                continue
            part = bare
        else:
            part = quoted
        for word in _WORD.findall(part.lower()):
            if word not in words:
                words.append(word)
    return words


def format_next_batch(cursor: SearchCursor, order_by_rank: bool) -> str:
    token: dict[str, Any] = {"s": cursor.stream_ordering}
    if order_by_rank:
        token["r"] = cursor.rank
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def parse_next_batch(token: str, order_by_rank: bool) -> SearchCursor:
    """A next_batch of an earlier answer with the same order_by; M_INVALID_PARAM otherwise."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_param("next_batch is not a token this server gave")
    if not isinstance(raw, dict) or type(raw.get("s")) is not int:
        raise invalid_param("next_batch is not a token this server gave")
    rank = raw.get("r")
    if order_by_rank != ("r" in raw) or (order_by_rank and type(rank) not in (int, float)):
        raise invalid_param("next_batch was given for another order_by")
    if not -(2 ** 63) <= raw["s"] < 2 ** 63:
        raise invalid_param("next_batch is not a token this server gave")
    return SearchCursor(raw["s"], float(rank) if order_by_rank else None)
