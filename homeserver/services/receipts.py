"""Read receipts and the fully read marker.

Receipts (m.read, m.read.private) are stored on the receipts stream and reach
/sync as one m.receipt event per room and thread; m.read.private is seen by
its sender only. Receipts and the marker only move forward, as in Synapse.
The fully read marker is the room account data event m.fully_read.
Spec: https://spec.matrix.org/v1.19/client-server-api/#receipts
and https://spec.matrix.org/v1.19/client-server-api/#fully-read-markers
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Awaitable, Callable

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.services.account_data import AccountDataService
from homeserver.services.clock import now_ms
from homeserver.services.notifier import Notifier
from homeserver.storage.events import EventStore
from homeserver.storage.receipts import UNTHREADED, Receipt, ReceiptStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamIdGenerator

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE)
MAIN_THREAD = "main"
# How far a receipt's event is followed up its relations to find its thread (the spec
# recommends 3 hops for "is this event in a thread").
MAX_RELATION_HOPS = 3


class ReceiptsService:
    def __init__(
        self, store: ReceiptStore, stream: StreamIdGenerator, events: EventStore, state: StateStore,
        rooms: RoomStore, account_data: AccountDataService, notifier: Notifier,
    ):
        self.store = store
        self.stream = stream
        self.events = events
        self.state = state
        self.rooms = rooms
        self.account_data = account_data
        self.notifier = notifier
        # Told of every public receipt stored: federation sends them on.
        self.listeners: list[Callable[[Receipt], Awaitable[None]]] = []

    async def set_receipt(
        self, user_id: str, room_id: str, receipt_type: str, event_id: str, thread_id: str | None,
    ) -> None:
        """POST /rooms/{roomId}/receipt/{receiptType}/{eventId}."""
        if receipt_type not in RECEIPT_TYPES + (FULLY_READ,):
            raise invalid_param(f"Receipt type must be one of {', '.join(RECEIPT_TYPES + (FULLY_READ,))}")
        if thread_id is not None:
            if receipt_type == FULLY_READ:
                raise invalid_param("thread_id is not compatible with m.fully_read")
            if thread_id != MAIN_THREAD and not ids.is_valid_event_id(thread_id):
                raise invalid_param("thread_id must be 'main' or the event id of a thread root")
        await self._require_joined(user_id, room_id)
        event = await self._event_in_room(room_id, event_id)
        if thread_id is not None:
            await self._check_thread(event, thread_id)
        if receipt_type == FULLY_READ:
            await self._move_fully_read(user_id, room_id, event)
        else:
            await self._put(user_id, room_id, receipt_type, event, thread_id or UNTHREADED)

    async def set_read_markers(self, user_id: str, room_id: str, markers: Mapping[str, str]) -> None:
        """POST /rooms/{roomId}/read_markers: receipt type (or m.fully_read) -> event id.

        Every event is checked before anything is stored.
        """
        await self._require_joined(user_id, room_id)
        events = {kind: await self._event_in_room(room_id, event_id) for kind, event_id in markers.items()}
        for kind, event in events.items():
            if kind == FULLY_READ:
                await self._move_fully_read(user_id, room_id, event)
            else:
                await self._put(user_id, room_id, kind, event, UNTHREADED)

    async def for_sync(
        self, user_id: str, room_ids: Sequence[str], after: int, up_to: int,
    ) -> dict[str, list[dict[str, Any]]]:
        """room id -> its m.receipt events with the receipts written in (after, up_to].

        One event per thread (as the spec suggests): a user's unthreaded and threaded
        receipts on one event would otherwise collide in the event's content.
        """
        if not room_ids or after >= up_to:
            return {}
        by_thread: dict[tuple[str, str], dict[str, Any]] = {}
        for r in await self.store.in_rooms(room_ids, after, up_to, READ_PRIVATE, user_id):
            data: dict[str, Any] = {"ts": r.ts}
            if r.thread_id != UNTHREADED:
                data["thread_id"] = r.thread_id
            content = by_thread.setdefault((r.room_id, r.thread_id), {})
            content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
        out: dict[str, list[dict[str, Any]]] = {}
        for (room_id, _thread), content in by_thread.items():
            out.setdefault(room_id, []).append({"type": "m.receipt", "content": content})
        return out

    async def _put(self, user_id: str, room_id: str, receipt_type: str, event: Event, thread_id: str) -> None:
        receipt = Receipt(room_id, receipt_type, user_id, thread_id, event.event_id, now_ms())
        async with self.stream.allocate() as position:
            # As Synapse: a receipt for an event before the stored one is ignored.
            stored = await self.store.put(receipt, event.internal["stream_ordering"], position)
        if stored:
            wake = [user_id] if receipt_type == READ_PRIVATE else await self.state.get_members(room_id, "join")
            self.notifier.notify_at(self.stream, position, wake)
            if receipt_type != READ_PRIVATE:
                for listener in self.listeners:
                    await listener(receipt)

    async def _move_fully_read(self, user_id: str, room_id: str, event: Event) -> None:
        current = await self.account_data.get(user_id, room_id, FULLY_READ)
        if current is not None and isinstance(current.get("event_id"), str):
            previous = await self.events.get_event(current["event_id"])
            # As Synapse: the marker only moves forward.
            if previous is not None and previous.internal.get("stream_ordering") is not None and (
                    previous.internal["stream_ordering"] >= event.internal["stream_ordering"]):
                return
        await self.account_data.put(user_id, room_id, FULLY_READ, {"event_id": event.event_id})

    async def _check_thread(self, event: Event, thread_id: str) -> None:
        """A threaded receipt's event must belong to its thread (the spec's 400, as Synapse):
        for "main", no thread relation on the way up its relations; for a thread, the
        root itself, an event in the thread, or an event related to either."""
        chain = [event.event_id]
        thread = None
        current: Event | None = event
        for _ in range(MAX_RELATION_HOPS):
            relates = current.content.get("m.relates_to") if current is not None else None
            parent_id = relates.get("event_id") if isinstance(relates, dict) else None
            if not isinstance(parent_id, str):
                break
            if relates.get("rel_type") == "m.thread":
                thread = parent_id
                break
            chain.append(parent_id)
            current = await self.events.get_event(parent_id)
            if current is None or current.room_id != event.room_id:
                break
        if thread_id == MAIN_THREAD:
            related = thread is None
        else:
            related = thread == thread_id or thread_id in chain
        if not related:
            raise invalid_param(f"Event {event.event_id} is not related to thread {thread_id}")

    async def _event_in_room(self, room_id: str, event_id: str) -> Event:
        event = await self.events.get_event(event_id) if ids.is_valid_event_id(event_id) else None
        if event is None or event.room_id != room_id or event.internal.get("stream_ordering") is None:
            raise not_found("Unknown event")
        return event

    async def _require_joined(self, user_id: str, room_id: str) -> None:
        current = await self.state.get_membership(room_id, user_id)
        if current is None or current[0] != "join":
            raise forbidden("You are not joined to this room")
