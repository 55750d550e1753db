"""The authorization rules of every room version, as pure functions.

``check_auth_rules(event, auth_state)`` runs the numbered rules of the event's
room version against a state map; ``check_auth_events`` runs the rules about
the event's own ``auth_events`` list (duplicates, selection, room id), and
``auth_types_for_event`` is the auth events selection both of them rely on.

What the caller does, not this module:
- signatures, including the one the ``join_authorised_via_users_server`` rule
  asks for (rule 4.2 of v8-v11, 5.2 of v12);
- whether an auth event was itself rejected (rule 2.3 / 3.3), and whether the
  create event behind a v12 room id was accepted (rule 2 of v12);
- whether a restricted join's user is in one of the allowed rooms.

Spec: https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules (and v1-v11)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.protocol.auth_common import AuthError, RuleNumbers, domain_of
from homeserver.protocol.events import Event
from homeserver.protocol.ids import is_valid_user_id
from homeserver.protocol.membership_rules import check_membership
from homeserver.protocol.power_levels import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    AuthState,
    get_named_level,
    get_required_level,
    get_user_power_level,
    parse_level,
    room_creators,
)
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

__all__ = [
    "AuthError",
    "auth_types_for_event",
    "check_auth_events",
    "check_auth_rules",
    "get_named_level",
    "get_required_level",
    "get_user_power_level",
    "room_creators",
]

_NAMED_LEVELS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)


def auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping,
) -> list[tuple[str, str]]:
    """The (type, state_key) pairs an event's ``auth_events`` may cite, in order.

    Spec: https://spec.matrix.org/v1.19/server-server-api/#auth-events-selection
    """
    if event_type == "m.room.create":
        return []
    keys: list[tuple[str, str]] = []
    # The create event is implied by the room id from room version 12 on.
    if not room_version.room_id_from_create_event:
        keys.append(CREATE_KEY)
    keys.append(POWER_LEVELS_KEY)
    keys.append(("m.room.member", sender))
    if event_type == "m.room.member":
        membership = content.get("membership")
        if state_key is not None:
            keys.append(("m.room.member", state_key))
        if membership in ("join", "invite", "knock"):
            keys.append(("m.room.join_rules", ""))
        if membership == "invite":
            token = _third_party_invite_token(content)
            if token is not None:
                keys.append(("m.room.third_party_invite", token))
        if membership == "join" and room_version.restricted_join_allowed:
            authoriser = content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str):
                keys.append(("m.room.member", authoriser))
    return list(dict.fromkeys(keys))


def _third_party_invite_token(content: Mapping) -> str | None:
    invite = content.get("third_party_invite")
    signed = invite.get("signed") if isinstance(invite, dict) else None
    token = signed.get("token") if isinstance(signed, dict) else None
    return token if isinstance(token, str) else None


def check_auth_events(event: Event, auth_events: Iterable[Event]) -> None:
    """The rules on the event's ``auth_events`` list itself (rule 2 of v1-v11, 3 of v12).

    ``auth_events`` are the events the event cites. Whether any of them was
    rejected (rule 2.3 / 3.3) is for the caller, who knows.
    """
    if event.type == "m.room.create":
        return  # rule 1 decides create events before these rules are reached
    n = RuleNumbers.of(event.room_version)
    expected = set(
        auth_types_for_event(
            event.room_version, event.type, event.sender, event.state_key, event.content
        )
    )
    seen: set[tuple[str, str]] = set()
    for auth_event in auth_events:
        if not auth_event.is_state():
            raise AuthError(
                f"rule {n.auth_events}.2: auth event {auth_event.event_id} is not state"
            )
        key = auth_event.state_tuple
        if key in seen:
            raise AuthError(f"rule {n.auth_events}.1: duplicate auth events for {key}")
        seen.add(key)
        if key not in expected:
            raise AuthError(
                f"rule {n.auth_events}.2: auth event {auth_event.event_id} for {key} "
                "is not one the auth events selection picks"
            )
        if auth_event.json.get("room_id") != event.json.get("room_id"):
            raise AuthError(
                f"rule {n.auth_events}.5: auth event {auth_event.event_id} is in another room"
            )
    if not event.room_version.room_id_from_create_event and CREATE_KEY not in seen:
        raise AuthError(f"rule {n.auth_events}.4: no m.room.create event among the auth events")


def check_auth_rules(event: Event, auth_state: Mapping[tuple[str, str], Event]) -> None:
    """Raise AuthError unless the event passes the rules of its room version.

    ``auth_state`` is the state to check against: built from the event's
    auth_events, the state before the event, or the current state. It must hold
    the m.room.create event (also in room version 12, where auth_events omit it).
    """
    room_version = event.room_version
    n = RuleNumbers.of(room_version)

    # Rule 1: m.room.create.
    if event.type == "m.room.create":
        _check_create(event)
        return

    create = auth_state.get(CREATE_KEY)
    if create is None:
        # Rule 2.4 (v12: rule 2, through the room id) needs the create event.
        rule = n.room_id or f"{n.auth_events}.4"
        raise AuthError(f"rule {rule}: no m.room.create event in the auth state")
    # Rule 2 (v12): the room id is the create event's id with sigil "!".
    if (
        room_version.room_id_from_create_event
        and event.json.get("room_id") != "!" + create.event_id[1:]
    ):
        raise AuthError(f"rule {n.room_id}: room id does not derive from the create event")
    # Rule 2.5 / 3.5, for the state entries these rules consult.
    _check_state_room(event, auth_state, n)

    # Rule 3 (v12: 4): a room with m.federate false is closed to other servers.
    federates = create.content.get("m.federate", True) is not False
    if not federates and domain_of(event.sender) != domain_of(create.sender):
        raise AuthError(f"rule {n.federate}: the room does not federate")

    # Rule 4 (v1-v5): m.room.aliases.
    if room_version.special_case_aliases_auth and event.type == "m.room.aliases":
        if event.state_key is None:
            raise AuthError(f"rule {n.aliases}.1: m.room.aliases without state_key")
        if event.state_key != domain_of(event.sender):
            raise AuthError(f"rule {n.aliases}.2: state_key is not the sender's domain")
        return

    if event.type == "m.room.member":
        check_membership(event, auth_state, n)
        return

    _check_sender_joined(event, auth_state, n)
    sender_level = get_user_power_level(event.sender, auth_state)

    if event.type == "m.room.third_party_invite":
        if sender_level >= get_named_level(auth_state, "invite"):
            return
        raise AuthError(f"rule {n.third_party_invite}.1: sender is below the invite level")

    required = get_required_level(auth_state, event.type, event.is_state())
    if required > sender_level:
        raise AuthError(
            f"rule {n.required_level}: {event.type} needs power level {required}, "
            f"sender has {sender_level}"
        )

    state_key = event.state_key
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != event.sender:
        raise AuthError(f"rule {n.user_state_key}: state_key names another user")

    if event.type == "m.room.power_levels":
        _check_power_levels(event, auth_state, sender_level, n)
        return

    # Rule 11 (v1, v2): redactions need the redact level or the same origin.
    if room_version.uses_event_id_in_event and event.type == "m.room.redaction":
        if sender_level >= get_named_level(auth_state, "redact"):
            return
        redacts = event.redacts
        if redacts is not None and domain_of(redacts) == domain_of(event.event_id):
            return
        raise AuthError(
            f"rule {n.redaction}.3: sender is below the redact level and the event "
            "being redacted is from another server"
        )


def _check_create(event: Event) -> None:
    room_version = event.room_version
    if event.json.get("prev_events"):
        raise AuthError("rule 1.1: m.room.create has prev_events")
    if room_version.room_id_from_create_event:
        if "room_id" in event.json:
            raise AuthError("rule 1.2: m.room.create has a room_id")
    elif domain_of(event.json.get("room_id")) != domain_of(event.sender):
        raise AuthError("rule 1.2: room id domain does not match the sender's")
    declared_version = event.content.get("room_version", "1")
    if not isinstance(declared_version, str) or declared_version not in KNOWN_ROOM_VERSIONS:
        raise AuthError("rule 1.3: unknown room_version in m.room.create")
    if not room_version.implicit_room_creator and "creator" not in event.content:
        raise AuthError("rule 1.4: m.room.create has no creator")
    if room_version.privileged_creators and "additional_creators" in event.content:
        additional = event.content["additional_creators"]
        if not isinstance(additional, list) or not all(map(is_valid_user_id, additional)):
            raise AuthError("rule 1.4: additional_creators is not a list of user IDs")


def _check_state_room(event: Event, auth_state: AuthState, n: RuleNumbers) -> None:
    keys = auth_types_for_event(
        event.room_version, event.type, event.sender, event.state_key, event.content
    )
    for key in keys:
        state_event = auth_state.get(key)
        if state_event is not None and state_event.json.get("room_id") != event.json.get("room_id"):
            raise AuthError(f"rule {n.auth_events}.5: {key} is from another room")


def _check_sender_joined(event: Event, auth_state: AuthState, n: RuleNumbers) -> None:
    member = auth_state.get(("m.room.member", event.sender))
    if member is None or member.membership != "join":
        raise AuthError(f"rule {n.sender_joined}: sender is not joined to the room")


def _check_power_levels(
    event: Event, auth_state: AuthState, sender_level: float, n: RuleNumbers
) -> None:
    """Rule 10 (v6-v11: 9) for a new m.room.power_levels event."""
    room_version = event.room_version
    content = event.content
    rule = n.power_levels

    if room_version.enforce_int_power_levels:
        for name in _NAMED_LEVELS:
            if name in content and parse_level(content[name], room_version) is None:
                raise AuthError(f"rule {rule}.1: {name} is not an integer")
        for name in ("events", "notifications"):
            if name in content and not _is_level_map(content[name], room_version):
                raise AuthError(f"rule {rule}.2: {name} is not an object of integers")

    users = content.get("users", {})
    if not isinstance(users, dict) or not all(
        is_valid_user_id(user) and parse_level(level, room_version) is not None
        for user, level in users.items()
    ):
        raise AuthError(f"rule {rule}.{n.pl_users}: users is not an object of user IDs to integers")

    if room_version.privileged_creators:
        listed = room_creators(auth_state) & users.keys()
        if listed:
            raise AuthError(f"rule {rule}.4: users lists room creators {sorted(listed)}")

    previous = auth_state.get(POWER_LEVELS_KEY)
    if previous is None:
        return  # rule 10.2 (v10, v11: 9.4; v12: 10.5): the first one is allowed
    old = previous.content

    for name in _NAMED_LEVELS:
        old_level, new_level = _levels(old, content, name, room_version)
        if old_level == new_level:
            continue
        if old_level is not None and old_level > sender_level:
            raise AuthError(
                f"rule {rule}.{n.pl_named}.1: current {name} is above the sender's level"
            )
        if new_level is not None and new_level > sender_level:
            raise AuthError(f"rule {rule}.{n.pl_named}.2: new {name} is above the sender's level")

    maps = ["events"]
    if room_version.limit_notifications_power_levels:
        maps.append("notifications")
    for map_name in maps:
        old_map, new_map = _level_map(old, map_name), _level_map(content, map_name)
        for key in old_map.keys() | new_map.keys():
            old_level, new_level = _levels(old_map, new_map, key, room_version)
            if old_level == new_level:
                continue
            if old_level is not None and old_level > sender_level:
                raise AuthError(
                    f"rule {rule}.{n.pl_map_old}.1: current {map_name}[{key!r}] "
                    "is above the sender's level"
                )
            if new_level is not None and new_level > sender_level:
                raise AuthError(
                    f"rule {rule}.{n.pl_map_new}.1: new {map_name}[{key!r}] "
                    "is above the sender's level"
                )

    old_users = _level_map(old, "users")
    for user in old_users.keys() | users.keys():
        old_level, new_level = _levels(old_users, users, user, room_version)
        if old_level == new_level:
            continue
        if user != event.sender and old_level is not None and old_level >= sender_level:
            raise AuthError(
                f"rule {rule}.{n.pl_users_old}.1: cannot change {user}, whose level "
                "is not below the sender's"
            )
        if new_level is not None and new_level > sender_level:
            raise AuthError(
                f"rule {rule}.{n.pl_users_new}.1: cannot give {user} a level above the sender's"
            )


def _is_level_map(value: object, room_version: RoomVersion) -> bool:
    return isinstance(value, dict) and all(
        parse_level(level, room_version) is not None for level in value.values()
    )


def _level_map(content: Mapping, name: str) -> Mapping:
    value = content.get(name)
    return value if isinstance(value, dict) else {}


def _levels(
    old: Mapping, new: Mapping, key: str, room_version: RoomVersion
) -> tuple[int | None, int | None]:
    # Absent means "not set", not the default: adding a value compares only the new one.
    return (
        parse_level(old[key], room_version) if key in old else None,
        parse_level(new[key], room_version) if key in new else None,
    )
