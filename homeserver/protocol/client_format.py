"""Events as clients see them (the "ClientEvent" format).

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-event-format
"""

from __future__ import annotations

from typing import Any

from homeserver.protocol.events import Event
from homeserver.protocol.redaction import redact_event

_CLIENT_KEYS = ("content", "event_id", "origin_server_ts", "room_id", "sender", "state_key", "type")


def client_event(
    event: Event,
    now_ms: int,
    redaction: Event | None = None,
    include_room_id: bool = True,
    for_device: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The client form of an event; ``redaction`` is the event that redacted it, if any.

    ``for_device`` is the (user id, device id) asking: the sender's own device
    gets back the transaction id it used.
    """
    # The messages of an erased user are served as if redacted, also where they could not
    # redact them (rooms they had left): their member events keep only the membership.
    erased = bool(event.internal.get("sender_erased")) and (not event.is_state() or event.type == "m.room.member")
    source = redact_event(event.json, event.room_version) if redaction is not None or erased else event.json
    out: dict[str, Any] = {key: source[key] for key in _CLIENT_KEYS if key in source}
    out["event_id"] = event.event_id
    if include_room_id:
        out["room_id"] = event.room_id
    else:
        out.pop("room_id", None)
    if "content" not in out:
        out["content"] = {}
    if event.type == "m.room.redaction" and redaction is None:
        # Room version 11 moved "redacts" into content; clients still read both (as Synapse serves them).
        redacts = event.redacts
        if redacts is not None:
            out["redacts"] = redacts
            if event.room_version.redacts_in_content:
                out["content"] = {**out["content"], "redacts": redacts}
    unsigned: dict[str, Any] = {"age": max(0, now_ms - event.origin_server_ts)}
    internal = event.internal
    if "prev_content" in internal:
        unsigned["prev_content"] = internal["prev_content"]
        unsigned["replaces_state"] = internal["replaces_state"]
        unsigned["prev_sender"] = internal["prev_sender"]
    txn = internal.get("txn")
    if txn and for_device is not None and for_device == (event.sender, txn[0]):
        unsigned["transaction_id"] = txn[1]
    if redaction is not None:
        unsigned["redacted_because"] = client_event(redaction, now_ms, include_room_id=include_room_id)
    out["unsigned"] = unsigned
    return out


def stripped_state_event(event: Event) -> dict[str, Any]:
    """The stripped form used in invite_room_state and knock_room_state."""
    return {
        "type": event.type,
        "state_key": event.state_key,
        "sender": event.sender,
        "content": dict(event.content),
    }
