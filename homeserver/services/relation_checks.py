"""Checks on the relationships a local user sends, made before the event is built (as Synapse does).

Spec: https://spec.matrix.org/v1.19/client-server-api/#forming-relationships-between-events
"""

from __future__ import annotations

from typing import Any, Mapping

from homeserver.errors import MatrixError
from homeserver.protocol.relations import ANNOTATION, MAX_ANNOTATION_KEY_LENGTH, THREAD, relation_of
from homeserver.services.auth import Requester
from homeserver.storage.events import EventStore
from homeserver.storage.relations import RelationStore


def _bad_relation(message: str, errcode: str = "M_UNKNOWN") -> MatrixError:
    return MatrixError(400, errcode, message)


class RelationChecks:
    """What a local user may relate to."""

    def __init__(self, events: EventStore, relations: RelationStore):
        self.events = events
        self.relations = relations

    async def check(
        self, room_id: str, requester: Requester, event_type: str, content: Mapping[str, Any], txn_id: str
    ) -> None:
        relation = relation_of(content)
        if relation is None:
            return
        if await self.events.get_txn_event_id(requester.user_id, requester.device_id, txn_id) is not None:
            return  # a retried send: the pipeline answers with the event already sent
        sender = requester.user_id
        parent = await self.events.get_event(relation.parent_id)
        if parent is not None:
            # Spec: "the original event and replacement event must have the same room_id".
            if parent.room_id != room_id:
                raise _bad_relation("Relations must be in the same room")
        elif not await self.relations.is_parent(relation.parent_id):
            # Nothing tells the client that event exists.
            raise _bad_relation("Can't send relation to unknown event")
        if relation.rel_type == ANNOTATION:
            if relation.key is None:
                raise _bad_relation("Missing aggregation key")
            if len(relation.key) > MAX_ANNOTATION_KEY_LENGTH:
                raise _bad_relation("Aggregation key is too long")
            if await self.relations.has_annotation(relation.parent_id, event_type, relation.key, sender):
                raise _bad_relation("Can't send same reaction twice", "M_DUPLICATE_ANNOTATION")
        elif (
            relation.rel_type == THREAD and parent is not None and not parent.internal.get("redacted_by")
            and relation_of(parent.content) is not None
        ):
            # Spec, "Validation of m.thread relationships": 400 M_UNKNOWN.
            raise _bad_relation("Cannot start threads from an event with a relation")
