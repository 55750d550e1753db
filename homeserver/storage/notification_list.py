"""The stored notifications of a user, newest first, for GET /notifications.

Reads the rows homeserver/storage/push_actions.py writes (event_push_actions).
Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3notifications
"""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class StoredNotification:
    room_id: str
    event_id: str
    stream_ordering: int
    thread_id: str
    highlight: bool


class NotificationListStore:
    def __init__(self, db: Database):
        self.db = db

    async def page(self, user_id: str, before: int | None, limit: int, only_highlight: bool
                   ) -> list[StoredNotification]:
        """Up to ``limit`` notifications below stream position ``before``, newest first."""
        rows = await self.db.fetch(
            "SELECT a.room_id, e.event_id, a.stream_ordering, a.thread_id, a.highlight"
            " FROM event_push_actions a JOIN events e ON e.stream_ordering = a.stream_ordering"
            " WHERE a.user_id = $1 AND ($2::bigint IS NULL OR a.stream_ordering < $2)"
            " AND (NOT $3 OR a.highlight)"
            " ORDER BY a.stream_ordering DESC LIMIT $4",
            user_id, before, only_highlight, limit,
        )
        return [
            StoredNotification(r["room_id"], r["event_id"], r["stream_ordering"], r["thread_id"], r["highlight"])
            for r in rows
        ]
