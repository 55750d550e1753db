"""Event relationships: what m.relates_to says, and which edits are valid.

Spec: https://spec.matrix.org/v1.19/client-server-api/#forming-relationships-between-events
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from homeserver.protocol.events import Event

ANNOTATION = "m.annotation"
REPLACE = "m.replace"
THREAD = "m.thread"
REFERENCE = "m.reference"

# Synapse's bound on a reaction key: long enough for any emoji sequence or short text.
MAX_ANNOTATION_KEY_LENGTH = 500


@dataclasses.dataclass(frozen=True)
class Relation:
    parent_id: str
    rel_type: str
    # An annotation's key (the reaction); None for other types or when missing.
    key: str | None = None


def relation_of(content: Mapping[str, Any]) -> Relation | None:
    """The relationship an event's content declares, or None.

    A relationship that does not match the schema is ignored (spec: "Relationships
    which don't match the schema ... are simply ignored"); rich replies have no
    rel_type and are not relations in this sense.
    """
    relates_to = content.get("m.relates_to")
    if not isinstance(relates_to, dict):
        return None
    rel_type = relates_to.get("rel_type")
    parent_id = relates_to.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent_id, str) or not rel_type or not parent_id:
        return None
    key = relates_to.get("key") if rel_type == ANNOTATION else None
    return Relation(parent_id, rel_type, key if isinstance(key, str) else None)


def is_valid_replacement(original: Event, replacement: Event) -> bool:
    """The spec's "Validity of replacement events" (the same room is checked by the caller).

    Spec: https://spec.matrix.org/v1.19/client-server-api/#validity-of-replacement-events
    """
    if original.sender != replacement.sender or original.type != replacement.type:
        return False
    if original.state_key is not None or replacement.state_key is not None:
        return False
    original_relation = relation_of(original.content)
    if original_relation is not None and original_relation.rel_type == REPLACE:
        return False  # an edit of an edit
    # An encrypted replacement carries m.new_content inside its ciphertext.
    return replacement.type == "m.room.encrypted" or isinstance(replacement.content.get("m.new_content"), dict)
