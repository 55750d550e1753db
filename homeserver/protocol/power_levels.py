"""Power levels and room creators, as the authorization rules read them.

Pure helpers over an auth state map ((type, state_key) -> Event); the rule-10
checks of a new m.room.power_levels event live in ``auth_rules``.

Spec: https://spec.matrix.org/v1.19/server-server-api/#definitions
and the ``m.room.power_levels`` event:
https://spec.matrix.org/v1.19/client-server-api/#mroompower_levels
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import RoomVersion

AuthState = Mapping[tuple[str, str], Event]

CREATE_KEY = ("m.room.create", "")
POWER_LEVELS_KEY = ("m.room.power_levels", "")

# The *invite level*, *kick level*, *ban level* and *redact level* when the
# power levels event leaves them out (or there is none).
NAMED_LEVEL_DEFAULTS: Mapping[str, int] = {"invite": 0, "kick": 50, "ban": 50, "redact": 50}

# Older rooms wrote power levels as strings: optional surrounding whitespace,
# one optional sign, decimal digits (leading zeroes allowed). Spec: room v1
# "m.room.power_levels events accept values as strings".
_STRINGY_INT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)


def parse_level(value: Any, room_version: RoomVersion) -> int | None:
    """A power level value as the room version reads it, or None if it is not one.

    From room version 10 only JSON integers count. Before that a string holding
    an integer counts too, and before room version 6 (no canonical JSON) a
    finite float counts, truncated. Booleans never count.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str):
        return int(value) if _STRINGY_INT.fullmatch(value) else None
    if isinstance(value, float) and not room_version.strict_canonicaljson:
        return int(value) if math.isfinite(value) else None
    return None


def _room_version(auth_state: AuthState) -> RoomVersion | None:
    for key in (CREATE_KEY, POWER_LEVELS_KEY):
        event = auth_state.get(key)
        if event is not None:
            return event.room_version
    return None


def _power_levels_content(auth_state: AuthState) -> Mapping[str, Any] | None:
    event = auth_state.get(POWER_LEVELS_KEY)
    return event.content if event is not None else None


def _sub_map(content: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = content.get(name)
    return value if isinstance(value, dict) else {}


def room_creators(auth_state: AuthState) -> set[str]:
    """The room's creators: who the m.room.create event names.

    Before room version 11 that is ``content.creator``; from 11 on it is the
    create event's ``sender``; from 12 on also every ``content.additional_creators``.
    """
    create = auth_state.get(CREATE_KEY)
    if create is None:
        return set()
    creators: set[str] = set()
    creator = original_creator(create)
    if creator is not None:
        creators.add(creator)
    if create.room_version.privileged_creators:
        additional = create.content.get("additional_creators")
        if isinstance(additional, list):
            creators.update(user for user in additional if isinstance(user, str))
    return creators


def original_creator(create: Event) -> str | None:
    """The one creator older rules speak of: ``creator`` before v11, ``sender`` after."""
    if create.room_version.implicit_room_creator:
        return create.sender
    creator = create.content.get("creator")
    return creator if isinstance(creator, str) else None


def get_user_power_level(user_id: str, auth_state: AuthState) -> int | float:
    """The user's power level; ``float('inf')`` for creators from room version 12.

    Without an m.room.power_levels event, the creator has 100 and everyone else 0.
    """
    return user_power_levels(auth_state)(user_id)


def user_power_levels(auth_state: AuthState) -> Callable[[str], int | float]:
    """``get_user_power_level`` of any user in one state: what it reads of the state is
    read once (for the levels of many senders, as push rule evaluation needs)."""
    room_version = _room_version(auth_state)
    if room_version is None:
        return lambda user_id: 0
    creators = room_creators(auth_state)
    privileged = room_version.privileged_creators
    content = _power_levels_content(auth_state)
    if content is None:
        return lambda user_id: (math.inf if privileged else 100) if user_id in creators else 0
    users = _sub_map(content, "users")
    default = parse_level(content.get("users_default"), room_version)

    def level_of(user_id: str) -> int | float:
        if privileged and user_id in creators:
            return math.inf
        level = parse_level(users.get(user_id), room_version)
        if level is None:
            level = default
        return level if level is not None else 0
    return level_of


def get_required_level(auth_state: AuthState, event_type: str, is_state: bool) -> int:
    """The *required power level* of an event type.

    ``events[type]`` if given, else ``state_default`` (50) for state events and
    ``events_default`` (0) for others; the defaults hold with no power levels event too.
    """
    room_version = _room_version(auth_state)
    content = _power_levels_content(auth_state) or {}
    if room_version is not None:
        level = parse_level(_sub_map(content, "events").get(event_type), room_version)
        if level is not None:
            return level
        level = parse_level(
            content.get("state_default" if is_state else "events_default"), room_version
        )
        if level is not None:
            return level
    return 50 if is_state else 0


def get_named_level(auth_state: AuthState, name: str, default: int | None = None) -> int:
    """The *invite*, *kick*, *ban* or *redact level* (``name``), else ``default``.

    ``default`` None means the spec's default for that name (invite 0, others 50).
    """
    if default is None:
        default = NAMED_LEVEL_DEFAULTS.get(name, 50)
    room_version = _room_version(auth_state)
    content = _power_levels_content(auth_state)
    if content is None or room_version is None:
        return default
    level = parse_level(content.get(name), room_version)
    return level if level is not None else default
