"""Send-to-device messaging: queued per device, delivered by /sync, deleted once acknowledged.

Spec: https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import invalid_param, missing_param
from homeserver.protocol import ids
from homeserver.services.auth import Requester
from homeserver.services.notifier import Notifier
from homeserver.storage.cache import LruCache
from homeserver.storage.streams import StreamIdGenerator
from homeserver.storage.to_device import ToDeviceStore

JsonDict = dict[str, Any]

# Messages per /sync response, as Synapse; the rest come with the next sync.
SYNC_LIMIT = 100
ALL_DEVICES = "*"
# Messages from other servers' users are idempotent by (sender, message id); they
# have no device here, so their transaction ids are kept under this device id.
REMOTE_SENDER_DEVICE = ""

# (sender, event type, message id, {server: {user: {device or "*": content}}}): set by the
# federation to send messages for other servers' users as m.direct_to_device EDUs.
RemoteSender = Callable[[str, str, str, dict[str, dict[str, dict[str, JsonDict]]]], Awaitable[None]]


class ToDeviceService:
    def __init__(self, server_name: str, store: ToDeviceStore, stream: StreamIdGenerator, notifier: Notifier):
        self.server_name = server_name
        self.store = store
        self.stream = stream
        self.notifier = notifier
        self.remote: RemoteSender | None = None
        # (user, device) -> the position up to which this process has deleted the device's
        # messages: a sync acknowledging no more than that, with no message after its token,
        # has nothing to ask (the wake of a long poll by a room event, most syncs).
        self._acknowledged: LruCache[tuple[str, str], int] = LruCache(10_000)

    async def send(self, sender: Requester, event_type: str, txn_id: str, messages: Any) -> None:
        if messages is None:
            raise missing_param("messages is required")
        if not isinstance(messages, dict):
            raise invalid_param("messages must be an object")
        queued: list[tuple[str, str | None, JsonDict]] = []
        remote: dict[str, dict[str, dict[str, JsonDict]]] = {}
        for user_id, devices in messages.items():
            try:
                parsed = ids.parse_user_id(user_id)
            except ids.InvalidIdError:
                raise invalid_param(f"Invalid user id {user_id!r}")
            if not isinstance(devices, dict):
                raise invalid_param("Each user must map device ids to message contents")
            for device_id, content in devices.items():
                if not isinstance(content, dict):
                    raise invalid_param("A message content must be an object")
                if parsed.server_name != self.server_name:
                    remote.setdefault(parsed.server_name, {}).setdefault(user_id, {})[device_id] = content
                    continue
                message = {"sender": sender.user_id, "type": event_type, "content": content}
                queued.append((user_id, None if device_id == ALL_DEVICES else device_id, message))
        if await self.store.txn_position(sender.user_id, sender.device_id, txn_id) is not None:
            return  # A retried request: already queued once.
        async with self.stream.allocate() as position:
            if not await self.store.queue((sender.user_id, sender.device_id), txn_id, queued, position):
                return
        self.notifier.notify_at(self.stream, position, {user_id for user_id, _, _ in queued})
        if remote and self.remote is not None:
            # Without federation, messages for other servers' users go nowhere.
            await self.remote(sender.user_id, event_type, secrets.token_urlsafe(16), remote)

    async def receive_remote(self, sender: str, event_type: str, message_id: str,
                             messages: dict[str, dict[str, JsonDict]]) -> None:
        """Messages of another server's user (an m.direct_to_device EDU, already checked to be
        from the sender's server) for our users' devices; once per message id."""
        queued: list[tuple[str, str | None, JsonDict]] = []
        for user_id, devices in messages.items():
            if ids.server_name_of(user_id) != self.server_name or not isinstance(devices, dict):
                continue
            for device_id, content in devices.items():
                if isinstance(content, dict):
                    message = {"sender": sender, "type": event_type, "content": content}
                    queued.append((user_id, None if device_id == ALL_DEVICES else device_id, message))
        if not queued:
            return
        async with self.stream.allocate() as position:
            if not await self.store.queue((sender, REMOTE_SENDER_DEVICE), message_id, queued, position):
                return
        self.notifier.notify_at(self.stream, position, {user_id for user_id, _, _ in queued})

    async def for_sync(self, user_id: str, device_id: str, since: int, up_to: int) -> tuple[list[JsonDict], int]:
        """The messages after ``since`` and the position the next token may carry.

        A sync with ``since`` acknowledges what came before it: those messages are deleted.
        """
        if since >= up_to and (not since or (self._acknowledged.get((user_id, device_id)) or 0) >= since):
            # The stream has not moved past the token, and what the token acknowledges is gone
            # already: no position at or before it can be written any more (it was persisted
            # before the token was given out).
            return [], up_to
        if since:
            rows = await self.store.acknowledge_and_read(user_id, device_id, since, up_to, SYNC_LIMIT)
            if since > (self._acknowledged.get((user_id, device_id)) or 0):
                self._acknowledged.set((user_id, device_id), since)
        else:
            rows = await self.store.messages(user_id, device_id, since, up_to, SYNC_LIMIT)
        position = rows[-1][0] if len(rows) == SYNC_LIMIT else up_to
        return [message for _, message in rows], position
