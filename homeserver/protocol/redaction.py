"""The redaction algorithm of every room version.

The redacted form is what signatures and reference hashes cover, so this must
match other servers byte for byte. Spec:
https://spec.matrix.org/v1.19/rooms/v1/#redactions (v1-v5),
https://spec.matrix.org/v1.19/rooms/v6/#redactions (v6-v7),
https://spec.matrix.org/v1.19/rooms/v8/#redactions,
https://spec.matrix.org/v1.19/rooms/v9/#redactions (v9-v10),
https://spec.matrix.org/v1.19/rooms/v11/#redactions (v11-v12).
"""

from __future__ import annotations

import copy
from typing import Any

from homeserver.protocol.room_versions import RoomVersion

_KEPT_TOP_LEVEL = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
# Dropped from v11 on (MSC2176): they served no purpose in the auth rules.
_KEPT_TOP_LEVEL_BEFORE_V11 = _KEPT_TOP_LEVEL | {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEYS = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)


def redact_event(event_json: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Return a new dict holding only what the room version's redaction algorithm keeps.

    Nothing of ``unsigned`` is kept: this is the PDU form that signatures and
    hashes cover; callers add ``unsigned.redacted_because`` for clients themselves.
    """
    return _redacted(event_json, room_version, copy.deepcopy)


def redacted_view(event_json: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """What ``redact_event`` keeps, in a new top-level dict whose values are the event's
    own, not copies: to be encoded (an event's signature and reference hash), never
    changed below its top level. Copying an event's lists and dicts at each signature is
    most of the cost of a redaction."""
    return _redacted(event_json, room_version, _same)


def _same(value: Any) -> Any:
    return value


def _redacted(event_json: dict[str, Any], room_version: RoomVersion, clone: Any) -> dict[str, Any]:
    kept = (
        _KEPT_TOP_LEVEL if room_version.updated_redaction_rules else _KEPT_TOP_LEVEL_BEFORE_V11
    )
    redacted = {key: clone(value) for key, value in event_json.items() if key in kept}
    content = event_json.get("content")
    redacted["content"] = _redact_content(
        event_json.get("type"), content if isinstance(content, dict) else {}, room_version, clone
    )
    return redacted


def _kept_content_keys(event_type: Any, room_version: RoomVersion) -> tuple[str, ...]:
    v11 = room_version.updated_redaction_rules
    if event_type == "m.room.member":
        if room_version.redaction_keeps_authorising_user:
            return ("membership", "join_authorised_via_users_server")
        return ("membership",)
    if event_type == "m.room.create":
        return ("creator",)  # v11 keeps all content; handled by the caller
    if event_type == "m.room.join_rules":
        return ("join_rule", "allow") if room_version.restricted_join_allowed else ("join_rule",)
    if event_type == "m.room.power_levels":
        return _POWER_LEVELS_KEYS + ("invite",) if v11 else _POWER_LEVELS_KEYS
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    # v6 (MSC2432) stopped protecting m.room.aliases, with its special auth rule.
    if event_type == "m.room.aliases" and room_version.special_case_aliases_auth:
        return ("aliases",)
    if event_type == "m.room.redaction" and v11:
        return ("redacts",)
    return ()


def _redact_content(
    event_type: Any, content: dict[str, Any], room_version: RoomVersion, clone: Any
) -> dict[str, Any]:
    if event_type == "m.room.create" and room_version.updated_redaction_rules:
        return clone(content)
    new_content = {
        key: clone(content[key])
        for key in _kept_content_keys(event_type, room_version)
        if key in content
    }
    # v11 (MSC3821): a redacted third-party invite join keeps the signed block its
    # auth rule needs, and nothing else of third_party_invite.
    if event_type == "m.room.member" and room_version.updated_redaction_rules:
        invite = content.get("third_party_invite")
        if isinstance(invite, dict):
            new_content["third_party_invite"] = (
                {"signed": clone(invite["signed"])} if "signed" in invite else {}
            )
    return new_content
