"""Spaces: which m.space.child events count, their order, and other servers' hierarchy answers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#mspacechild and
"Ordering of children within a space" in the same module.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from homeserver.protocol import ids

SPACE_CHILD = "m.space.child"
SPACE_ROOM_TYPE = "m.space"

JsonDict = dict[str, Any]

# The string fields of a room summary (spec: RoomSummary, PublicRoomsChunk).
_STRING_FIELDS = ("name", "topic", "canonical_alias", "avatar_url", "join_rule", "room_type", "encryption",
                  "room_version")

# "Must consist of ASCII characters within the range \x20 (space) and \x7E (~),
# inclusive. Must not exceed 50 characters."
_ORDER = re.compile(r"[\x20-\x7E]{1,50}")


def child_via(content: Mapping[str, Any]) -> list[str] | None:
    """The child's ``via`` servers; None when missing or invalid, and then the
    child "is not considered to be part of the space" (a redacted child has none)."""
    via = content.get("via")
    if not isinstance(via, list) or not via or not all(isinstance(s, str) for s in via):
        return None
    return via


def child_order(content: Mapping[str, Any]) -> str | None:
    """A valid ``order``; one of the wrong type or with other contents counts as absent."""
    order = content.get("order")
    return order if isinstance(order, str) and _ORDER.fullmatch(order) else None


def is_suggested(content: Mapping[str, Any]) -> bool:
    return content.get("suggested") is True


def is_child_event(stripped: Any) -> bool:
    """A (stripped) m.space.child event that names a room and has a valid via."""
    return (
        isinstance(stripped, dict) and stripped.get("type") == SPACE_CHILD
        and isinstance(stripped.get("state_key"), str) and ids.is_valid_room_id(stripped["state_key"])
        and isinstance(stripped.get("content"), dict) and child_via(stripped["content"]) is not None
    )


def child_sort_key(stripped: Mapping[str, Any]) -> tuple[bool, str, int, str]:
    """Children with a valid order first, by order (code points); then by the event's
    origin_server_ts; ties by room id (the state key)."""
    order = child_order(stripped.get("content") or {})
    ts = stripped.get("origin_server_ts")
    ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
    return (order is None, order or "", ts, stripped.get("state_key") or "")


def ordered_children(stripped_events: list[dict[str, Any]], suggested_only: bool = False) -> list[dict[str, Any]]:
    """The valid children in the spec's order (optionally only the suggested ones)."""
    children = [
        e for e in stripped_events
        if is_child_event(e) and (not suggested_only or is_suggested(e["content"]))
    ]
    return sorted(children, key=child_sort_key)


@dataclasses.dataclass(frozen=True)
class RoomEntry:
    """A room's summary and its (ordered, valid, possibly suggested-only) stripped children."""

    summary: JsonDict
    children: list[JsonDict]

    def as_json(self) -> JsonDict:
        return {**self.summary, "children_state": self.children}


@dataclasses.dataclass(frozen=True)
class RemoteAnswer:
    room: RoomEntry
    # Summaries of children the remote server gave, by room id; children it says nobody may reach.
    children: dict[str, JsonDict]
    inaccessible: frozenset[str]


# Other servers' GET /hierarchy answers (server-server-api/#get_matrixfederationv1hierarchyroomid):
# only their well-formed parts are kept, their shape is never trusted.

def _summary_from(raw: Any) -> JsonDict | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("room_id"), str) or not ids.is_valid_room_id(raw["room_id"]):
        return None
    out: JsonDict = {"room_id": raw["room_id"]}
    members = raw.get("num_joined_members")
    out["num_joined_members"] = members if isinstance(members, int) and not isinstance(members, bool) and members >= 0 else 0
    for flag in ("world_readable", "guest_can_join"):
        out[flag] = raw.get(flag) is True
    for name in _STRING_FIELDS:
        value = raw.get(name)
        if isinstance(value, str) and value:
            out[name] = value
    allowed = raw.get("allowed_room_ids")
    if isinstance(allowed, list):
        allowed = [r for r in allowed if isinstance(r, str) and ids.is_valid_room_id(r)]
        if allowed:
            out["allowed_room_ids"] = allowed
    return out


def _stripped_child(raw: Any) -> JsonDict | None:
    if not is_child_event(raw):
        return None
    ts = raw.get("origin_server_ts")
    sender = raw.get("sender")
    return {
        "type": SPACE_CHILD, "state_key": raw["state_key"], "content": raw["content"],
        "sender": sender if isinstance(sender, str) else "",
        "origin_server_ts": ts if isinstance(ts, int) and not isinstance(ts, bool) else 0,
    }


def parse_remote_answer(room_id: str, raw: Any, suggested_only: bool) -> RemoteAnswer | None:
    """A federation /hierarchy answer for ``room_id``, or None when it is not one."""
    if not isinstance(raw, dict):
        return None
    room = raw.get("room")
    summary = _summary_from(room)
    if summary is None or summary["room_id"] != room_id:
        return None
    state = room.get("children_state")
    stripped = [c for c in (_stripped_child(e) for e in state) if c] if isinstance(state, list) else []
    children_state = (ordered_children(stripped, suggested_only)
                      if summary.get("room_type") == SPACE_ROOM_TYPE else [])
    children: dict[str, JsonDict] = {}
    raw_children = raw.get("children")
    for child in raw_children if isinstance(raw_children, list) else []:
        child_summary = _summary_from(child)
        if child_summary is not None:
            children[child_summary["room_id"]] = child_summary
    inaccessible = raw.get("inaccessible_children")
    return RemoteAnswer(
        RoomEntry(summary, children_state), children,
        frozenset(r for r in inaccessible if isinstance(r, str)) if isinstance(inaccessible, list) else frozenset(),
    )
