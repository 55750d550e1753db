"""Bundled aggregations: unsigned["m.relations"] of events served to clients.

Spec: https://spec.matrix.org/v1.19/client-server-api/#aggregations-of-child-events
m.thread, m.replace and m.reference are aggregated; m.annotation is not (since
v1.7 clients count reactions themselves).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from homeserver.protocol.events import Event
from homeserver.protocol.relations import REFERENCE, REPLACE, THREAD, is_valid_replacement
from homeserver.storage.events import EventStore
from homeserver.storage.relations import RelationStore

# serialize(events, bundle) -> client events; bundle=False serialises without aggregations.
Serializer = Callable[[Sequence[Event], bool], Awaitable[list[dict[str, Any]]]]


class Aggregator:
    def __init__(self, events: EventStore, relations: RelationStore):
        self.events = events
        self.relations = relations

    async def bundles(
        self, events: Sequence[Event], user_id: str, serialize: Serializer, nested: bool = False
    ) -> dict[str, dict[str, Any]]:
        """m.relations per event id, for the events that have any.

        ``nested`` is set for a thread's latest event, whose own aggregations are
        bundled too (its edits) but which cannot itself be a thread root.
        """
        # Spec: "State events do not currently receive bundled aggregations."
        parents = {e.event_id: e for e in events if not e.is_state() and not e.internal.get("rejected")}
        if not parents:
            return {}
        found = await self.relations.aggregations(list(parents), user_id)
        out: dict[str, dict[str, Any]] = {}

        edits = await self._latest_edits(parents, found.edits)
        if edits:
            serialized = await serialize(list(edits.values()), False)
            for (parent_id, _), client_edit in zip(edits.items(), serialized):
                out.setdefault(parent_id, {})[REPLACE] = client_edit

        if found.threads and not nested:
            latest = await self.events.get_events(s.latest_event_id for s in found.threads.values())
            roots = [p for p, s in found.threads.items() if s.latest_event_id in latest]
            serialized = await serialize([latest[found.threads[p].latest_event_id] for p in roots], True)
            for parent_id, client_latest in zip(roots, serialized):
                summary = found.threads[parent_id]
                participated = summary.user_participated or parents[parent_id].sender == user_id
                out.setdefault(parent_id, {})[THREAD] = {
                    "latest_event": client_latest,
                    "count": summary.count,
                    "current_user_participated": participated,
                }

        for parent_id, ids in found.references.items():
            out.setdefault(parent_id, {})[REFERENCE] = {"chunk": [{"event_id": i} for i in ids]}
        return out

    async def _latest_edits(self, parents: dict[str, Event], candidates: dict[str, list[str]]) -> dict[str, Event]:
        """The most recent valid replacement of each parent (spec: "Server-side aggregation of m.replace")."""
        # Spec: a redacted original is served without its replacement.
        pending = {p: ids for p, ids in candidates.items() if not parents[p].internal.get("redacted_by")}
        chosen: dict[str, Event] = {}
        # The storage already ordered candidates newest first and matched sender and type;
        # the rest of the validity rules need the events, so load the first of each, then
        # the next only where one turned out invalid (rare).
        while pending:
            loaded = await self.events.get_events(ids[0] for ids in pending.values())
            still = {}
            for parent_id, ids in pending.items():
                edit = loaded.get(ids[0])
                if edit is not None and is_valid_replacement(parents[parent_id], edit):
                    chosen[parent_id] = edit
                elif len(ids) > 1:
                    still[parent_id] = ids[1:]
            pending = still
        return chosen
