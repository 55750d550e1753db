"""Space children: which m.space.child events count, and their order.

Spec: https://spec.matrix.org/v1.19/client-server-api/#mspacechild and
"Ordering of children within a space" in the same module.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from homeserver.protocol import ids

SPACE_CHILD = "m.space.child"
SPACE_ROOM_TYPE = "m.space"

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
