"""What a user may see of a room's events, and in which form.

History visibility: https://spec.matrix.org/v1.19/client-server-api/#history-visibility
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from homeserver.protocol.client_format import client_event
from homeserver.protocol.events import Event
from homeserver.services.aggregations import Aggregator
from homeserver.services.clock import now_ms
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore


class EventViews:
    def __init__(self, events: EventStore, state: StateStore, aggregator: Aggregator | None = None):
        self.events = events
        self.state = state
        self.aggregator = aggregator

    async def visible_to(self, user_id: str, events: list[Event], currently_joined: bool) -> list[Event]:
        """The events of one room the user may see, in the given order."""
        return (await self.visible_to_many(user_id, [(events, currently_joined)]))[0]

    async def visible_to_many(
        self, user_id: str, batches: Sequence[tuple[list[Event], bool]],
    ) -> list[list[Event]]:
        """``visible_to`` of several lists (one room each, with whether the user is joined
        to it now): the visibility is resolved once per state group, all groups read at once."""
        keys = [("m.room.history_visibility", ""), ("m.room.member", user_id)]
        groups = await self.state.get_entries(
            (e.internal.get("state_group_before") for events, _ in batches for e in events), keys)
        # The visibility and membership events in force before each event.
        at_group: dict[int | None, tuple[str | None, str | None]] = {None: (None, None)}
        for group, state in groups.items():
            at_group[group] = (state.get(keys[0]), state.get(keys[1]))
        loaded = await self.events.get_events({i for pair in at_group.values() for i in pair if i})

        out = []
        for events, currently_joined in batches:
            visible = []
            # The decision for events that change neither the visibility nor the user's
            # membership depends on the state before them only: once per state group.
            by_group: dict[int | None, bool] = {}
            for event in events:
                group = event.internal.get("state_group_before")
                changes_visibility = event.type == "m.room.history_visibility" and event.state_key == ""
                changes_membership = event.type == "m.room.member" and event.state_key == user_id
                plain = not (changes_visibility or changes_membership)
                if plain and group in by_group:
                    if by_group[group]:
                        visible.append(event)
                    continue
                hv_id, member_id = at_group.get(group, (None, None))
                hv_event = loaded.get(hv_id) if hv_id else None
                member_event = loaded.get(member_id) if member_id else None
                visibilities = {_visibility(hv_event.content if hv_event else {})}
                memberships = {member_event.membership if member_event else None}
                # A visibility change, and a change of the user's own membership, may be seen
                # if the value before *or* after it allows it (spec).
                if changes_visibility:
                    visibilities.add(_visibility(event.content))
                if changes_membership:
                    memberships.add(event.membership)
                allowed = any(_allows(v, m, currently_joined) for v in visibilities for m in memberships)
                if plain:
                    by_group[group] = allowed
                if allowed:
                    visible.append(event)
            out.append(visible)
        return out

    async def serialize(
        self,
        events: Iterable[Event],
        for_device: tuple[str, str] | None = None,
        include_room_id: bool = True,
        bundle_aggregations: bool = True,
        _nested: bool = False,
    ) -> list[dict]:
        """Events in the client format.

        Events served to a device (``for_device``) are those of timelines, /event,
        /context and the relations APIs: they carry their bundled aggregations,
        looked up for the whole list at once, unless ``bundle_aggregations`` is off.
        """
        events = list(events)
        redaction_ids = [e.internal["redacted_by"] for e in events if e.internal.get("redacted_by")]
        redactions = await self.events.get_events(redaction_ids) if redaction_ids else {}
        bundles: dict[str, dict] = {}
        if for_device is not None and bundle_aggregations and self.aggregator is not None and events:

            async def serialize_related(related: Sequence[Event], bundle: bool) -> list[dict]:
                if bundle:
                    return await self.serialize(related, for_device, include_room_id, _nested=True)
                return await self.serialize(related, None, include_room_id)

            bundles = await self.aggregator.bundles(events, for_device[0], serialize_related, nested=_nested)
        now = now_ms()
        out = []
        for event in events:
            redacted_by = event.internal.get("redacted_by")
            client = client_event(
                event, now,
                redaction=redactions.get(redacted_by) if redacted_by else None,
                include_room_id=include_room_id,
                for_device=for_device,
            )
            if event.event_id in bundles:
                client["unsigned"]["m.relations"] = bundles[event.event_id]
            out.append(client)
        return out

    async def serialize_lists(
        self,
        lists: Sequence[Sequence[Event]],
        for_device: tuple[str, str] | None = None,
        include_room_id: bool = True,
        bundle_aggregations: bool = True,
    ) -> list[list[dict]]:
        """``serialize`` of several lists (one room's timeline each, say) in one call, so
        that their aggregations and redactions are looked up once: each list's events in
        the client format, in the order given."""
        flat = await self.serialize(
            [e for events in lists for e in events], for_device, include_room_id, bundle_aggregations)
        out, at = [], 0
        for events in lists:
            out.append(flat[at:at + len(events)])
            at += len(events)
        return out


KNOWN_VISIBILITIES = ("world_readable", "shared", "invited", "joined")


def _visibility(content: Mapping[str, Any]) -> str:
    # Spec: no value, or one not understood, is "shared".
    value = content.get("history_visibility")
    return value if value in KNOWN_VISIBILITIES else "shared"


def _allows(visibility: str, membership: str | None, currently_joined: bool) -> bool:
    """The spec's rules, given the visibility and the user's membership at an event."""
    if visibility == "world_readable" or membership == "join":  # rules 1 and 2
        return True
    if visibility == "shared":
        # Rule 3, "joined at any point after the event", read as Synapse and Dendrite do:
        # the user is joined now.
        return currently_joined
    return visibility == "invited" and membership == "invite"  # rule 4
