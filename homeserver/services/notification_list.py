"""GET /notifications: the events that notified the user, newest first.

The rows are those the unread counts of /sync store (services/notifications.py):
the rooms are evaluated up to now first, so that the list does not wait for a sync.
Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3notifications
"""

from __future__ import annotations

from typing import Any

from homeserver.services.event_views import EventViews
from homeserver.services.notifications import NotificationCounter
from homeserver.storage.events import EventStore
from homeserver.storage.notification_list import NotificationListStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamIdGenerator


class NotificationList:
    def __init__(self, store: NotificationListStore, counter: NotificationCounter, events: EventStore,
                 state: StateStore, views: EventViews, event_stream: StreamIdGenerator):
        self.store = store
        self.counter = counter
        self.events = events
        self.state = state
        self.views = views
        self.event_stream = event_stream

    async def page(self, user_id: str, before: int | None, limit: int, only_highlight: bool) -> dict[str, Any]:
        up_to = self.event_stream.current()
        rooms = await self.state.get_rooms_for_user(user_id)
        # The joined rooms' events evaluated (together), so that the page lists them.
        await self.counter.unread_counts_many(
            user_id, {room_id: up_to for room_id, (membership, _) in rooms.items() if membership == "join"})
        await self.counter.settled(user_id)  # the page reads the actions those counts found
        found = await self.store.page(user_id, before, limit, only_highlight)
        loaded = await self.events.get_events([n.event_id for n in found])
        shown = [n for n in found if n.event_id in loaded]
        rendered = await self.views.serialize([loaded[n.event_id] for n in shown], include_room_id=True)
        read_positions: dict[str, dict[str, int]] = {}
        notifications = []
        for item, event in zip(shown, rendered):
            if item.room_id not in read_positions:
                read_positions[item.room_id] = await self.counter.store.read_positions(user_id, item.room_id)
            read = read_positions[item.room_id]
            # Read: up to the unthreaded receipt, or the receipt of the event's thread ("main" too).
            is_read = item.stream_ordering <= max(read.get("", 0), read.get(item.thread_id, 0))
            # Only whether the event highlighted is stored, so the actions are those it implies.
            actions: list[Any] = ["notify"]
            if item.highlight:
                actions.append({"set_tweak": "highlight"})
            notifications.append({
                "actions": actions,
                "event": event,
                "read": is_read,
                "room_id": item.room_id,
                "ts": event["origin_server_ts"],
            })
        body: dict[str, Any] = {"notifications": notifications}
        if len(found) == limit and found:
            body["next_token"] = str(found[-1].stream_ordering)
        return body
