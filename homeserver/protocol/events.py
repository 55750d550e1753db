"""The PDU: a read-only view over the event JSON exactly as signed.

The raw dict is the truth; it is never rebuilt from a model (STYLE.md habit 3).
Spec: https://spec.matrix.org/v1.19/rooms/v12/#event-format
"""

from __future__ import annotations

from typing import Any, Mapping

from homeserver.protocol.room_versions import RoomVersion

StateKey = tuple[str, str]


class Event:
    """An event of a known room version, with its id.

    ``json`` is the PDU as signed (no ``unsigned`` data from us added to it);
    ``internal`` carries per-server data never sent to peers (e.g. the
    ``unsigned`` block shown to clients, the stream position).
    """

    __slots__ = ("json", "event_id", "room_version", "internal")

    def __init__(self, event_json: dict[str, Any], event_id: str, room_version: RoomVersion):
        self.json = event_json
        self.event_id = event_id
        self.room_version = room_version
        self.internal: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r}>"

    @property
    def room_id(self) -> str:
        room_id = self.json.get("room_id")
        if room_id is None and self.room_version.room_id_from_create_event and self.type == "m.room.create":
            # Room version 12: the create event carries no room id; the id is its hash.
            return "!" + self.event_id[1:]
        return room_id

    @property
    def type(self) -> str:
        return self.json["type"]

    @property
    def sender(self) -> str:
        return self.json["sender"]

    @property
    def content(self) -> Mapping[str, Any]:
        content = self.json.get("content")
        return content if isinstance(content, dict) else {}

    @property
    def state_key(self) -> str | None:
        return self.json.get("state_key")

    def is_state(self) -> bool:
        return "state_key" in self.json

    @property
    def state_tuple(self) -> StateKey:
        return (self.type, self.json["state_key"])

    @property
    def depth(self) -> int:
        return self.json.get("depth", 0)

    @property
    def origin_server_ts(self) -> int:
        return self.json.get("origin_server_ts", 0)

    @property
    def prev_event_ids(self) -> list[str]:
        return _event_ids(self.json.get("prev_events", []))

    @property
    def auth_event_ids(self) -> list[str]:
        return _event_ids(self.json.get("auth_events", []))

    @property
    def redacts(self) -> str | None:
        """The event this redacts: top level before v11, in content from v11 on."""
        if self.type != "m.room.redaction":
            return None
        if self.room_version.redacts_in_content:
            value = self.content.get("redacts")
        else:
            value = self.json.get("redacts")
        return value if isinstance(value, str) else None

    @property
    def membership(self) -> str | None:
        value = self.content.get("membership")
        return value if isinstance(value, str) else None


def _event_ids(refs: list[Any]) -> list[str]:
    # Room versions 1 and 2 list [event_id, {hashes}] pairs; later versions list ids.
    ids = []
    for ref in refs:
        if isinstance(ref, str):
            ids.append(ref)
        elif isinstance(ref, list) and ref and isinstance(ref[0], str):
            ids.append(ref[0])
    return ids
