"""Account data: client-defined JSON per user, global or per room, reported by /sync."""

from __future__ import annotations

from typing import Any

from homeserver.services.ignored_users import IGNORED_USER_LIST, IgnoredUsers, check_ignored_user_list
from homeserver.services.notifier import Notifier
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.streams import StreamIdGenerator


class AccountDataService:
    def __init__(self, store: AccountDataStore, stream: StreamIdGenerator, notifier: Notifier,
                 ignored_users: IgnoredUsers | None = None):
        self.store = store
        self.stream = stream
        self.notifier = notifier
        self.ignored_users = ignored_users

    async def put(self, user_id: str, room_id: str | None, data_type: str, content: dict[str, Any]) -> None:
        if room_id is None and data_type == IGNORED_USER_LIST:
            # The server reads this one (it hides the users' events): it must make sense.
            check_ignored_user_list(user_id, content)
        async with self.stream.allocate() as position:
            await self.store.put(user_id, room_id or GLOBAL, data_type, content, position)
        if room_id is None and data_type == IGNORED_USER_LIST and self.ignored_users is not None:
            self.ignored_users.forget([user_id])
        self.notifier.notify_at(self.stream, position, [user_id])

    async def get(self, user_id: str, room_id: str | None, data_type: str) -> dict[str, Any] | None:
        return await self.store.get(user_id, room_id or GLOBAL, data_type)
