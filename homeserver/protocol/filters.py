"""Event filters for /sync, /messages and /context.

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Mapping

from homeserver.protocol.events import Event


class FilterError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class EventFilter:
    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    contains_url: bool | None = None
    unread_thread_notifications: bool = False

    def allows(self, event: Event) -> bool:
        if self.rooms is not None and event.room_id not in self.rooms:
            return False
        if event.room_id in self.not_rooms:
            return False
        if self.senders is not None and event.sender not in self.senders:
            return False
        if event.sender in self.not_senders:
            return False
        if self.types is not None and not _matches_any(event.type, self.types):
            return False
        if _matches_any(event.type, self.not_types):
            return False
        if self.contains_url is not None:
            has_url = isinstance(event.content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def allows_room(self, room_id: str) -> bool:
        if self.rooms is not None and room_id not in self.rooms:
            return False
        return room_id not in self.not_rooms

    def allows_type(self, event_type: str) -> bool:
        if self.types is not None and not _matches_any(event_type, self.types):
            return False
        return not _matches_any(event_type, self.not_types)


@dataclasses.dataclass(frozen=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: EventFilter = EventFilter()
    state: EventFilter = EventFilter()
    ephemeral: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()

    @property
    def allows_all_rooms(self) -> bool:
        return self.rooms is None and not self.not_rooms

    def allows_room(self, room_id: str) -> bool:
        if self.rooms is not None and room_id not in self.rooms:
            return False
        return room_id not in self.not_rooms

    @property
    def lazy_load_members(self) -> bool:
        """Lazy loading of members, asked in the state filter or the timeline's (as Synapse reads it)."""
        return self.state.lazy_load_members or self.timeline.lazy_load_members


@dataclasses.dataclass(frozen=True)
class SyncFilter:
    room: RoomFilter = RoomFilter()
    account_data: EventFilter = EventFilter()
    presence: EventFilter = EventFilter()
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"


def _matches_any(value: str, patterns: tuple[str, ...]) -> bool:
    return any(_wildcard(p).fullmatch(value) if "*" in p else value == p for p in patterns)


@functools.lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    # The spec's only wildcard is '*'; fnmatch would also treat '?' and '[...]' as patterns.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _str_list(raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FilterError(f"{path}{key} must be a list of strings")
    return tuple(value)


def _bool(raw: Mapping[str, Any], key: str, path: str, default: bool | None) -> bool | None:
    value = raw.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise FilterError(f"{path}{key} must be a boolean")
    return value


def _object(raw: Any, path: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FilterError(f"{path or 'filter'} must be an object")
    return raw


def parse_event_filter(raw: Any, path: str = "") -> EventFilter:
    raw = _object(raw, path.rstrip("."))
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise FilterError(f"{path}limit must be a positive integer")
    return EventFilter(
        limit=limit,
        types=_str_list(raw, "types", path),
        not_types=_str_list(raw, "not_types", path) or (),
        senders=_str_list(raw, "senders", path),
        not_senders=_str_list(raw, "not_senders", path) or (),
        rooms=_str_list(raw, "rooms", path),
        not_rooms=_str_list(raw, "not_rooms", path) or (),
        lazy_load_members=bool(_bool(raw, "lazy_load_members", path, False)),
        include_redundant_members=bool(_bool(raw, "include_redundant_members", path, False)),
        contains_url=_bool(raw, "contains_url", path, None),
        unread_thread_notifications=bool(_bool(raw, "unread_thread_notifications", path, False)),
    )


def parse_sync_filter(raw: Any) -> SyncFilter:
    raw = _object(raw, "filter")
    room = _object(raw.get("room"), "room")
    event_format = raw.get("event_format", "client")
    if event_format not in ("client", "federation"):
        raise FilterError("event_format must be 'client' or 'federation'")
    return SyncFilter(
        room=RoomFilter(
            rooms=_str_list(room, "rooms", "room."),
            not_rooms=_str_list(room, "not_rooms", "room.") or (),
            include_leave=bool(_bool(room, "include_leave", "room.", False)),
            timeline=parse_event_filter(room.get("timeline"), "room.timeline."),
            state=parse_event_filter(room.get("state"), "room.state."),
            ephemeral=parse_event_filter(room.get("ephemeral"), "room.ephemeral."),
            account_data=parse_event_filter(room.get("account_data"), "room.account_data."),
        ),
        account_data=parse_event_filter(raw.get("account_data"), "account_data."),
        presence=parse_event_filter(raw.get("presence"), "presence."),
        event_fields=_str_list(raw, "event_fields", ""),
        event_format=event_format,
    )
