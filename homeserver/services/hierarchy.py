"""The space hierarchy: a depth-first walk of m.space.child links, with a summary of each room.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidhierarchy
and https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1hierarchyroomid

One service answers both. For a client, the walk starts at the requested room
and goes depth first (a space's children are visited in the spec's order
before its later siblings); rooms this server is not in are asked of their
``via`` servers over federation, through the ``remote`` hook that
federation/app.py sets (services never import federation), and their answers
are cached for a minute. For a server, the answer covers one space and its
children we are in, as the origin server may see them, never walking further.

What a user may see (the spec's list): rooms they are joined or invited to;
rooms with join rule public, knock or knock_restricted (where the room version
has them); world_readable rooms; restricted rooms whose allowed rooms hold
them. A server sees the same, judged by any of its users, and rooms its users
are joined or invited to; the room's server ACL applies.

Pagination state stays here, in memory, for five minutes under a random token
(the token is opaque; a restart forgets it and ``from`` is then refused, as
the spec allows for an unknown token).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import time
from typing import Any, Protocol, Sequence

from aiohttp import web

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.protocol import ids, spaces
from homeserver.protocol.spaces import RemoteAnswer, RoomEntry, parse_remote_answer
from homeserver.protocol.events import Event
from homeserver.protocol.redaction import redact_event
from homeserver.protocol.room_versions import RoomVersion
from homeserver.protocol.server_acl import server_allowed
from homeserver.storage.events import EventStore
from homeserver.storage.hierarchy import HierarchyStore
from homeserver.storage.state import StateStore

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# "Servers should apply a default value, and impose a maximum value" for max_depth.
MAX_DEPTH = 20
# Rooms looked at for one page (those the user may not see included), and remote
# spaces asked: a page may end early, with a next_batch, rather than take long.
MAX_ROOMS_EXAMINED = 200
MAX_REMOTE_FETCHES = 10
# Children of one space in a federation answer, and servers asked per remote room.
MAX_CHILDREN_PER_SPACE = 50
MAX_SERVERS_PER_ROOM = 3
REMOTE_CACHE_SECONDS = 60
NO_ANSWER_CACHE_SECONDS = 30
# After this long on a page, no further remote space is asked (the next page goes on).
PAGE_SECONDS = 20
REMOTE_CACHE_SIZE = 1000
SESSION_SECONDS = 5 * 60
MAX_SESSIONS = 1000

_SUMMARY_TYPES = (
    "m.room.create", "m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar",
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.encryption",
    "m.room.server_acl",
)


class RemoteHierarchy(Protocol):
    """What the service asks of federation (federation/hierarchy.py provides it)."""

    async def fetch(self, server: str, room_id: str, suggested_only: bool) -> Any:
        """The server's GET /hierarchy answer (parsed JSON), or None when it gave none."""


@dataclasses.dataclass(frozen=True)
class _QueueEntry:
    room_id: str
    via: tuple[str, ...]
    depth: int = 0
    # The summary a remote parent's answer gave, usable unless the room is a space to walk.
    remote_summary: JsonDict | None = None


@dataclasses.dataclass(frozen=True)
class _Session:
    user_id: str
    room_id: str
    suggested_only: bool
    max_depth: int | None
    queue: tuple[_QueueEntry, ...]
    processed: frozenset[str]
    created: float


@dataclasses.dataclass
class _LocalRoom:
    """A room this server is in, as its current state says."""

    room_id: str
    version: RoomVersion | None
    contents: dict[str, JsonDict]  # event type -> content, for the summary types
    child_events: list[JsonDict]  # stripped m.space.child events, with origin_server_ts
    joined: int

    def field(self, event_type: str, key: str) -> Any:
        return self.contents.get(event_type, {}).get(key)

    @property
    def join_rule(self) -> str | None:
        rule = self.field("m.room.join_rules", "join_rule")
        return rule if isinstance(rule, str) else None

    @property
    def world_readable(self) -> bool:
        return self.field("m.room.history_visibility", "history_visibility") == "world_readable"

    @property
    def room_type(self) -> str | None:
        value = self.field("m.room.create", "type")
        return value if isinstance(value, str) else None

    def open_to_all(self) -> bool:
        """Public, knockable (where the version allows it) or world readable."""
        rule = self.join_rule
        version = self.version
        return (
            rule == "public" or self.world_readable
            or (rule == "knock" and version is not None and version.knock_allowed)
            or (rule == "knock_restricted" and version is not None and version.knock_restricted_allowed)
        )

    def allowed_room_ids(self) -> list[str]:
        """The rooms a restricted join rule admits the members of (spec: restricted rooms)."""
        if self.join_rule not in ("restricted", "knock_restricted"):
            return []
        if self.version is None or not self.version.restricted_join_allowed:
            return []
        allow = self.field("m.room.join_rules", "allow")
        if not isinstance(allow, list):
            return []
        return list(dict.fromkeys(
            entry["room_id"] for entry in allow
            if isinstance(entry, dict) and entry.get("type") == "m.room_membership"
            and isinstance(entry.get("room_id"), str) and ids.is_valid_room_id(entry["room_id"])
        ))

    def summary(self) -> JsonDict:
        out: JsonDict = {
            "room_id": self.room_id,
            "num_joined_members": self.joined,
            "world_readable": self.world_readable,
            "guest_can_join": self.field("m.room.guest_access", "guest_access") == "can_join",
        }
        for name, event_type, key in (
            ("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
            ("canonical_alias", "m.room.canonical_alias", "alias"), ("avatar_url", "m.room.avatar", "url"),
            ("join_rule", "m.room.join_rules", "join_rule"), ("room_type", "m.room.create", "type"),
            ("encryption", "m.room.encryption", "algorithm"),
        ):
            value = self.field(event_type, key)
            if isinstance(value, str) and value:
                out[name] = value
        if self.version is not None:
            out["room_version"] = self.version.identifier
        allowed = self.allowed_room_ids()
        if allowed:
            out["allowed_room_ids"] = allowed
        return out

    def entry(self, suggested_only: bool) -> RoomEntry:
        # Only a space's children count (spec: "If the room is not a space-room, this should be empty").
        children = (spaces.ordered_children(self.child_events, suggested_only)
                    if self.room_type == spaces.SPACE_ROOM_TYPE else [])
        return RoomEntry(self.summary(), children)


def _content(event: Event) -> JsonDict:
    if event.internal.get("redacted_by"):
        return dict(redact_event(event.json, event.room_version).get("content") or {})
    return dict(event.content)


class HierarchyService:
    def __init__(self, server_name: str, store: HierarchyStore, state: StateStore, events: EventStore):
        self.server_name = server_name
        self.store = store
        self.state = state
        self.events = events
        # Set by federation/app.py when federation is on.
        self.remote: RemoteHierarchy | None = None
        self._sessions: collections.OrderedDict[str, _Session] = collections.OrderedDict()
        self._remote_cache: collections.OrderedDict[tuple[str, bool], tuple[float, RemoteAnswer | None]] = (
            collections.OrderedDict())

    # The Client-Server API

    async def hierarchy(
        self, user_id: str, room_id: str, *, suggested_only: bool = False, max_depth: int | None = None,
        limit: int | None = None, from_token: str | None = None, via: Sequence[str] = (),
    ) -> JsonDict:
        """One page of the walk from ``room_id``; 403 when the user may not see that room."""
        if limit is not None and limit < 1:
            raise invalid_param("limit must be greater than zero")
        if max_depth is not None and max_depth < 0:
            raise invalid_param("max_depth must not be negative")
        page_size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        depth_limit = min(max_depth, MAX_DEPTH) if max_depth is not None else MAX_DEPTH
        root_via = tuple(via) or tuple(s for s in [ids.server_name_of(room_id)] if s)

        if from_token is not None:
            session = self._session(from_token)
            if (session.user_id, session.room_id, session.suggested_only, session.max_depth) != (
                    user_id, room_id, suggested_only, max_depth):
                raise invalid_param("suggested_only and max_depth cannot change on paginated requests")
            queue = list(session.queue)
            processed = set(session.processed)
        else:
            queue = [_QueueEntry(room_id, root_via)]
            processed = set()

        # The root is checked on every page: the user may have left it since.
        if not await self._root_visible(user_id, room_id, root_via, suggested_only):
            raise forbidden("You may not see this room: you are not in it, and it is not open to preview")

        rooms: list[JsonDict] = []
        examined = fetches = 0
        deadline = time.monotonic() + PAGE_SECONDS
        while queue and len(rooms) < page_size and examined < MAX_ROOMS_EXAMINED:
            entry = queue[-1]
            if entry.room_id in processed:
                queue.pop()
                continue
            local = await self._local_room(entry.room_id)
            needs_fetch = local is None and not self._summary_will_do(entry, depth_limit)
            # At least one fetch per page, so that every page makes progress.
            if needs_fetch and fetches and (fetches >= MAX_REMOTE_FETCHES or time.monotonic() > deadline):
                break  # the next page goes on from here
            queue.pop()
            processed.add(entry.room_id)
            examined += 1
            fetches += needs_fetch
            found = await self._entry_for_user(user_id, entry, local, suggested_only, depth_limit)
            if found is None:
                continue
            room, child_summaries, inaccessible = found
            rooms.append(room.as_json())
            if entry.depth < depth_limit:
                # Reversed, so that the first child in the spec's order is popped next.
                queue.extend(
                    _QueueEntry(c["state_key"], tuple(c["content"]["via"]), entry.depth + 1,
                                child_summaries.get(c["state_key"]))
                    for c in reversed(room.children) if c["state_key"] not in inaccessible
                )

        response: JsonDict = {"rooms": rooms}
        queue = [e for e in queue if e.room_id not in processed]
        if queue:
            response["next_batch"] = self._save_session(_Session(
                user_id, room_id, suggested_only, max_depth, tuple(queue), frozenset(processed), time.monotonic()))
        return response

    async def _root_visible(self, user_id: str, room_id: str, via: tuple[str, ...], suggested_only: bool) -> bool:
        local = await self._local_room(room_id)
        if local is not None:
            return await self._user_may_see_local(user_id, local)
        answer = await self._fetch_remote(room_id, via, suggested_only)
        return answer is not None and await self._user_may_see_remote(user_id, room_id, answer.room.summary)

    @staticmethod
    def _summary_will_do(entry: _QueueEntry, depth_limit: int) -> bool:
        """A remote parent's summary of the room serves unless the room is a space whose
        children are still to be walked."""
        summary = entry.remote_summary
        return summary is not None and (
            summary.get("room_type") != spaces.SPACE_ROOM_TYPE or entry.depth >= depth_limit)

    async def _entry_for_user(
        self, user_id: str, entry: _QueueEntry, local: _LocalRoom | None, suggested_only: bool, depth_limit: int,
    ) -> tuple[RoomEntry, dict[str, JsonDict], frozenset[str]] | None:
        # What we hold ourselves is preferred to what another server says.
        if local is not None:
            if not await self._user_may_see_local(user_id, local):
                return None
            return local.entry(suggested_only), {}, frozenset()
        if self._summary_will_do(entry, depth_limit):
            assert entry.remote_summary is not None
            room, child_summaries, inaccessible = RoomEntry(entry.remote_summary, []), {}, frozenset()
        else:
            answer = await self._fetch_remote(entry.room_id, entry.via, suggested_only)
            if answer is None:
                return None
            room, child_summaries, inaccessible = answer.room, answer.children, answer.inaccessible
        # The remote server judged for all of this server's users; judge for this one.
        if not await self._user_may_see_remote(user_id, entry.room_id, room.summary):
            return None
        return room, child_summaries, inaccessible

    def _session(self, token: str) -> _Session:
        self._expire_sessions()
        session = self._sessions.get(token)
        if session is None:
            raise invalid_param("Unknown pagination token")
        return session

    def _save_session(self, session: _Session) -> str:
        self._expire_sessions()
        token = secrets.token_urlsafe(18)
        self._sessions[token] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token

    def _expire_sessions(self) -> None:
        cutoff = time.monotonic() - SESSION_SECONDS
        while self._sessions:
            token, oldest = next(iter(self._sessions.items()))
            if oldest.created > cutoff:
                break
            del self._sessions[token]

    # The Server-Server API

    async def federation_hierarchy(self, origin: str, room_id: str, suggested_only: bool) -> JsonDict:
        """The space and those of its children we are in, as ``origin`` may see them (no recursion)."""
        local = await self._local_room(room_id)
        if local is None or not await self._server_may_see(origin, local):
            raise not_found("Room not known here, or not open to your server")
        root = local.entry(suggested_only)
        children: list[JsonDict] = []
        inaccessible: list[str] = []
        for child in root.children[:MAX_CHILDREN_PER_SPACE]:
            child_id = child["state_key"]
            child_room = await self._local_room(child_id)
            if child_room is None:
                continue  # "Rooms which the responding server cannot provide details on will be outright excluded"
            if await self._server_may_see(origin, child_room):
                children.append(child_room.entry(suggested_only).as_json())
            else:
                inaccessible.append(child_id)
        return {"room": root.as_json(), "children": children, "inaccessible_children": inaccessible}

    # Who may see what

    async def _user_may_see_local(self, user_id: str, room: _LocalRoom) -> bool:
        membership = await self.state.get_membership(room.room_id, user_id)
        if membership is not None:
            if membership[0] in ("join", "invite"):
                return True
            if membership[0] == "ban":
                return room.world_readable
        if room.open_to_all():
            return True
        allowed = room.allowed_room_ids()
        return bool(allowed) and await self.store.user_joined_any(allowed, user_id)

    async def _server_may_see(self, origin: str, room: _LocalRoom) -> bool:
        acl = room.contents.get("m.room.server_acl")
        if acl is not None and not server_allowed(acl, origin):
            return False
        if room.open_to_all():
            return True
        if await self.store.server_has_member([room.room_id], origin, ["join", "invite"]):
            return True
        allowed = room.allowed_room_ids()
        return bool(allowed) and await self.store.server_has_member(allowed, origin, ["join"])

    async def _user_may_see_remote(self, user_id: str, room_id: str, summary: JsonDict) -> bool:
        # The spec: a room without a join rule in its summary is taken to be public.
        if summary.get("join_rule", "public") in ("public", "knock", "knock_restricted"):
            return True
        if summary.get("world_readable") is True:
            return True
        allowed = summary.get("allowed_room_ids") or []
        if allowed and await self.store.user_joined_any(allowed, user_id):
            return True
        # An invite (or a join we hold only as an outlier) to the remote room.
        membership = await self.state.get_membership(room_id, user_id)
        return membership is not None and membership[0] in ("join", "invite")

    # Loading rooms

    async def _local_room(self, room_id: str) -> _LocalRoom | None:
        """The room as its current state says, if this server is in it (else its state may be stale)."""
        joined, resident = await self.store.joined_members(room_id, self.server_name)
        if not resident:
            return None
        state_ids = await self.store.summary_state_ids(room_id, _SUMMARY_TYPES)
        loaded = await self.events.get_events(state_ids.values())
        contents: dict[str, JsonDict] = {}
        child_events: list[JsonDict] = []
        for (event_type, state_key), event_id in state_ids.items():
            event = loaded.get(event_id)
            if event is None:
                continue
            if event_type == spaces.SPACE_CHILD:
                child_events.append({
                    "type": event_type, "state_key": state_key, "content": _content(event),
                    "sender": event.sender, "origin_server_ts": event.origin_server_ts,
                })
            else:
                contents[event_type] = _content(event)
        version = await self.events.get_room_version(room_id)
        return _LocalRoom(room_id, version, contents, child_events, joined)

    async def _fetch_remote(self, room_id: str, via: Sequence[str], suggested_only: bool) -> RemoteAnswer | None:
        """The first valid answer of the room's via servers, or None; answers are cached a
        minute, and the lack of one half a minute (a page may hold many children of a dead server)."""
        if self.remote is None:
            return None
        key = (room_id, suggested_only)
        cached = self._remote_cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        servers = [s for s in dict.fromkeys(via) if s != self.server_name and ids.is_valid_server_name(s)]
        servers = servers[:MAX_SERVERS_PER_ROOM]
        if not servers:
            return None
        answer = None
        for server in servers:
            answer = parse_remote_answer(room_id, await self.remote.fetch(server, room_id, suggested_only),
                                         suggested_only)
            if answer is not None:
                break
        if answer is None:
            log.info("no server of %s gave the hierarchy of %s", servers, room_id)
        seconds = REMOTE_CACHE_SECONDS if answer is not None else NO_ANSWER_CACHE_SECONDS
        self._remote_cache[key] = (time.monotonic() + seconds, answer)
        self._remote_cache.move_to_end(key)
        while len(self._remote_cache) > REMOTE_CACHE_SIZE:
            self._remote_cache.popitem(last=False)
        return answer


# The app holds the one instance, so that federation/app.py can set its remote hook.
HIERARCHY = web.AppKey("hierarchy", HierarchyService)
