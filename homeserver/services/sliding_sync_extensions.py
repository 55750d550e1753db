"""The extensions of simplified sliding sync (MSC4186): to_device, e2ee, account_data, receipts, typing.

Each reuses the service that feeds /sync v3. Receipts, typing and room account
data are for the rooms of the window (or the lists and subscriptions the
extension names), never for every room of the user.
Spec: MSC3884 (e2ee), MSC3885 (to_device), MSC3959 (account_data), MSC3960 (receipts), MSC3961 (typing).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.errors import invalid_param
from homeserver.services.e2e_keys import E2eKeyService
from homeserver.services.push_rules import PUSH_RULES_TYPE, PushRulesService
from homeserver.services.receipts import ReceiptsService
from homeserver.services.to_device import ToDeviceService
from homeserver.services.tokens import SyncToken
from homeserver.services.typing import TypingService
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.sync_queries import Memberships


@dataclasses.dataclass(frozen=True)
class RoomScope:
    """Which rooms of the window an extension covers: the lists and subscriptions it names
    (``*`` or nothing said: all of them)."""

    lists: tuple[str, ...] | None = None
    rooms: tuple[str, ...] | None = None

    def select(self, by_list: dict[str, list[str]], subscriptions: list[str]) -> list[str]:
        chosen: dict[str, None] = {}
        for name, room_ids in by_list.items():
            if self.lists is None or "*" in self.lists or name in self.lists:
                chosen.update(dict.fromkeys(room_ids))
        for room_id in subscriptions:
            if self.rooms is None or "*" in self.rooms or room_id in self.rooms:
                chosen[room_id] = None
        return list(chosen)


@dataclasses.dataclass(frozen=True)
class ExtensionsRequest:
    to_device: bool = False
    to_device_since: str | None = None
    e2ee: bool = False
    account_data: RoomScope | None = None
    receipts: RoomScope | None = None
    typing: RoomScope | None = None


@dataclasses.dataclass
class WindowRooms:
    """The rooms of a response's window, and for each the token the connection last
    brought it up to (None: new to the connection)."""

    by_list: dict[str, list[str]]
    subscriptions: list[str]
    sent_at: dict[str, SyncToken | None]


class SlidingSyncExtensions:
    def __init__(
        self, to_device: ToDeviceService, e2e_keys: E2eKeyService, account_data: AccountDataStore,
        push_rules: PushRulesService, receipts: ReceiptsService, typing: TypingService,
    ):
        self.to_device = to_device
        self.e2e_keys = e2e_keys
        self.account_data = account_data
        self.push_rules = push_rules
        self.receipts = receipts
        self.typing = typing

    async def build(
        self, request: ExtensionsRequest, user_id: str, device_id: str, since: SyncToken | None, now: SyncToken,
        window: WindowRooms, memberships: Memberships,
    ) -> tuple[dict[str, Any], bool]:
        """The extensions section, and whether it carries anything new. ``memberships``: the
        user's rooms, the window's membership events and the device's key counts, as read
        for the lists."""
        out: dict[str, Any] = {}
        news = False
        if request.to_device:
            after = _to_device_since(request.to_device_since)
            messages, position = await self.to_device.for_sync(user_id, device_id, after, now.to_device)
            out["to_device"] = {"next_batch": str(position), "events": messages}
            news |= bool(messages)
        if request.e2ee:
            e2ee: dict[str, Any] = {"device_lists": {"changed": [], "left": []}}
            if since is not None:
                changes = await self.e2e_keys.device_list_changes(
                    user_id, since.events, now.events, since.device_lists, now.device_lists,
                    list(memberships.rooms), memberships.members_changed())
                e2ee["device_lists"] = {"changed": changes.changed, "left": changes.left}
                news |= bool(changes.changed or changes.left)
            e2ee["device_one_time_keys_count"] = self.e2e_keys.reported_key_counts(memberships.one_time_keys)
            e2ee["device_unused_fallback_key_types"] = memberships.fallback_key_types
            out["e2ee"] = e2ee
        if request.account_data is not None:
            section, found = await self._account_data(request.account_data, user_id, since, now, window)
            out["account_data"] = section
            news |= found
        if request.receipts is not None:
            rooms = await self._receipts(request.receipts, user_id, now, window)
            out["receipts"] = {"rooms": rooms}
            news |= bool(rooms)
        if request.typing is not None:
            rooms = self._typing(request.typing, now, window)
            out["typing"] = {"rooms": rooms}
            news |= bool(rooms)
        return out, news

    async def _account_data(
        self, scope: RoomScope, user_id: str, since: SyncToken | None, now: SyncToken, window: WindowRooms,
    ) -> tuple[dict[str, Any], bool]:
        room_ids = scope.select(window.by_list, window.subscriptions)
        changed = await self.account_data.changed_since(user_id, since.account_data if since else 0, now.account_data)
        # Rooms new to the connection (or back after leaving the window) get all their data.
        stale = [r for r in room_ids if window.sent_at.get(r) is None or (
            since is not None and window.sent_at[r].account_data < since.account_data)]
        everything = changed if since is None or not stale else await self.account_data.of_rooms(
            user_id, stale, now.account_data)
        global_data = dict(changed.get(GLOBAL, {}))
        if since is None or PUSH_RULES_TYPE in global_data:
            # As in /sync v3: computed afresh, so that new server-default rules show up.
            global_data[PUSH_RULES_TYPE] = await self.push_rules.account_data_content(user_id)
        rooms: dict[str, list[dict[str, Any]]] = {}
        for room_id in room_ids:
            source = everything if room_id in stale else changed
            items = source.get(room_id, {})
            if items:
                rooms[room_id] = [{"type": t, "content": c} for t, c in items.items()]
        section = {"global": [{"type": t, "content": c} for t, c in global_data.items()], "rooms": rooms}
        return section, bool(rooms) or (since is not None and bool(global_data))

    async def _receipts(
        self, scope: RoomScope, user_id: str, now: SyncToken, window: WindowRooms,
    ) -> dict[str, dict[str, Any]]:
        by_after: dict[int, list[str]] = {}
        for room_id in scope.select(window.by_list, window.subscriptions):
            sent_at = window.sent_at.get(room_id)
            by_after.setdefault(sent_at.receipts if sent_at is not None else 0, []).append(room_id)
        rooms: dict[str, dict[str, Any]] = {}
        for after, room_ids in by_after.items():
            found = await self.receipts.for_sync(user_id, room_ids, after, now.receipts)
            for room_id, events in found.items():
                # MSC3960: one m.receipt event per room; the per-thread events are merged.
                content: dict[str, Any] = {}
                for event in events:
                    for event_id, by_type in event["content"].items():
                        for receipt_type, by_user in by_type.items():
                            content.setdefault(event_id, {}).setdefault(receipt_type, {}).update(by_user)
                rooms[room_id] = {"type": "m.receipt", "content": content}
        return rooms

    def _typing(self, scope: RoomScope, now: SyncToken, window: WindowRooms) -> dict[str, dict[str, Any]]:
        rooms: dict[str, dict[str, Any]] = {}
        new = [r for r in scope.select(window.by_list, window.subscriptions) if window.sent_at.get(r) is None]
        rooms.update(self.typing.for_sync(new, None))
        by_after: dict[int, list[str]] = {}
        for room_id in scope.select(window.by_list, window.subscriptions):
            sent_at = window.sent_at.get(room_id)
            if sent_at is not None:
                by_after.setdefault(sent_at.typing, []).append(room_id)
        for after, room_ids in by_after.items():
            rooms.update(self.typing.for_sync(room_ids, after))
        return rooms


def _to_device_since(value: str | None) -> int:
    if value is None:
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise invalid_param("extensions.to_device.since is not a token of ours")
    return int(value)
