"""Format and size checks of a PDU: step 1 of "Checks performed on receipt of a PDU".

An event failing these is dropped (remote) or refused with M_BAD_JSON (local).
Spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu,
https://spec.matrix.org/v1.19/client-server-api/#size-limits and the event
format of each room version (https://spec.matrix.org/v1.19/rooms/).
"""

from __future__ import annotations

from typing import Any

import canonicaljson

from homeserver.protocol.canonical import CanonicalJsonError, check_canonical_values
from homeserver.protocol.ids import InvalidIdError, parse_user_id
from homeserver.protocol.room_versions import EventFormat, RoomVersion

MAX_PDU_BYTES = 65536
MAX_KEY_BYTES = 255
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
# Before room version 6, depth only has to fit a signed 64-bit integer.
MAX_DEPTH = 2**63 - 1


class PduFormatError(ValueError):
    """The event does not follow its room version's event format."""


def _require(event_json: dict[str, Any], key: str, kind: type, kind_name: str) -> Any:
    if key not in event_json:
        raise PduFormatError(f"missing required key '{key}'")
    value = event_json[key]
    # bool is a subclass of int, but true is not a depth.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PduFormatError(f"'{key}' must be {kind_name}")
    return value


def check_pdu_format(event_json: dict[str, Any], room_version: RoomVersion, encoded: bytes | None = None) -> None:
    """Raise PduFormatError unless the event has the shape and sizes its room version requires.

    ``encoded``: the event's canonical JSON, when the caller has it (the size is its length)."""
    if not isinstance(event_json, dict):
        raise PduFormatError("an event must be a JSON object")

    # Size limits: the whole event, then the identifying keys.
    try:
        size = len(encoded if encoded is not None else canonicaljson.encode_canonical_json(event_json))
    except (TypeError, ValueError) as exc:
        raise PduFormatError(f"event cannot be encoded as canonical JSON: {exc}") from exc
    if size > MAX_PDU_BYTES:
        raise PduFormatError(f"event is {size} bytes, more than {MAX_PDU_BYTES}")

    event_type = _require(event_json, "type", str, "a string")
    sender = _require(event_json, "sender", str, "a string")
    _require(event_json, "content", dict, "an object")
    depth = _require(event_json, "depth", int, "an integer")
    _require(event_json, "origin_server_ts", int, "an integer")
    prev_events = _require(event_json, "prev_events", list, "a list")
    auth_events = _require(event_json, "auth_events", list, "a list")

    # v12: the create event has no room_id; its id becomes the room id.
    create_without_room_id = (
        room_version.room_id_from_create_event and event_type == "m.room.create"
    )
    if not create_without_room_id or "room_id" in event_json:
        _require(event_json, "room_id", str, "a string")
    if room_version.event_format is EventFormat.V1:
        _require(event_json, "event_id", str, "a string")
    for key in ("state_key", "event_id"):
        if key in event_json and not isinstance(event_json[key], str):
            raise PduFormatError(f"'{key}' must be a string")
    for key in ("hashes", "signatures", "unsigned"):
        if key in event_json and not isinstance(event_json[key], dict):
            raise PduFormatError(f"'{key}' must be an object")

    for key in ("sender", "room_id", "state_key", "type", "event_id"):
        value = event_json.get(key)
        if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise PduFormatError(f"'{key}' is longer than {MAX_KEY_BYTES} bytes")

    try:
        parse_user_id(sender)
    except InvalidIdError as exc:
        raise PduFormatError(f"'sender' is not a valid user id: {exc}") from exc

    if depth < 0 or depth > MAX_DEPTH:
        raise PduFormatError("'depth' is out of range")
    if len(prev_events) > MAX_PREV_EVENTS:
        raise PduFormatError(f"more than {MAX_PREV_EVENTS} prev_events")
    if len(auth_events) > MAX_AUTH_EVENTS:
        raise PduFormatError(f"more than {MAX_AUTH_EVENTS} auth_events")
    for key, refs in (("prev_events", prev_events), ("auth_events", auth_events)):
        for ref in refs:
            if not _is_event_reference(ref, room_version):
                raise PduFormatError(f"'{key}' holds an invalid event reference: {ref!r}")

    # Room version 6+: strict canonical JSON, no floats, integers within [-(2**53)+1, 2**53-1].
    if room_version.strict_canonicaljson:
        try:
            check_canonical_values(event_json)
        except CanonicalJsonError as exc:
            raise PduFormatError(str(exc)) from exc


def _is_event_reference(ref: Any, room_version: RoomVersion) -> bool:
    if room_version.event_format is EventFormat.V1:
        # v1, v2: [event_id, {"sha256": reference hash}]
        return (
            isinstance(ref, list)
            and len(ref) == 2
            and isinstance(ref[0], str)
            and isinstance(ref[1], dict)
        )
    return isinstance(ref, str)
