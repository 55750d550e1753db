"""Room tags: the m.tag account data of a room, changed one tag at a time.

Stored through the account data service, so that /sync carries m.tag in the room's
account_data and long polls wake.
Spec: https://spec.matrix.org/v1.19/client-server-api/#room-tagging
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from homeserver.errors import bad_json, invalid_param
from homeserver.services.account_data import AccountDataService

TAG_TYPE = "m.tag"
# Spec: "The name of a tag MUST NOT exceed 255 bytes."
MAX_TAG_BYTES = 255


def check_tag(tag: str) -> None:
    if not tag:
        raise invalid_param("The tag may not be empty")
    if len(tag.encode("utf-8")) > MAX_TAG_BYTES:
        raise invalid_param(f"The tag may not exceed {MAX_TAG_BYTES} bytes")


def check_tag_content(content: dict[str, Any]) -> None:
    """A tag's object: ``order``, if given, a number from 0 to 1; other keys are kept as sent."""
    if "order" in content:
        order = content["order"]
        if isinstance(order, bool) or not isinstance(order, (int, float)):
            raise bad_json("order must be a number")
        if not 0 <= order <= 1:
            raise invalid_param("order must be between 0 and 1")


class RoomTags:
    def __init__(self, account_data: AccountDataService):
        self.account_data = account_data
        # Each change reads the room's tags and writes them back whole: two changes at once
        # for the same user and room would otherwise lose one of them.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    async def get(self, user_id: str, room_id: str) -> dict[str, dict[str, Any]]:
        content = await self.account_data.get(user_id, room_id, TAG_TYPE)
        tags = (content or {}).get("tags")
        return tags if isinstance(tags, dict) else {}

    async def put(self, user_id: str, room_id: str, tag: str, content: dict[str, Any]) -> None:
        check_tag(tag)
        check_tag_content(content)
        async with self._lock(user_id, room_id):
            tags = await self.get(user_id, room_id)
            tags[tag] = content
            await self.account_data.put(user_id, room_id, TAG_TYPE, {"tags": tags})

    async def delete(self, user_id: str, room_id: str, tag: str) -> None:
        """Removing a tag the room does not have succeeds and changes nothing (as Synapse)."""
        check_tag(tag)
        async with self._lock(user_id, room_id):
            tags = await self.get(user_id, room_id)
            if tag not in tags:
                return
            del tags[tag]
            await self.account_data.put(user_id, room_id, TAG_TYPE, {"tags": tags})

    def _lock(self, user_id: str, room_id: str) -> asyncio.Lock:
        key = (user_id, room_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock
