"""EDUs both ways: typing and receipts in, and ours out to the servers of the room.

Spec: https://spec.matrix.org/v1.19/server-server-api/#typing-notifications and
#receipts. An EDU names users; only the users of the server that sent it are
believed.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.errors import MatrixError
from homeserver.protocol import ids
from homeserver.storage.receipts import UNTHREADED, Receipt

from federation.context import Federation
from federation.transactions import TransactionHandler

log = logging.getLogger(__name__)


class EduRelay:
    def __init__(self, fed: Federation):
        self.fed = fed

    def install(self, transactions: TransactionHandler) -> None:
        transactions.on_edu("m.typing", self.typing_in)
        transactions.on_edu("m.receipt", self.receipts_in)
        self.fed.services.typing.listeners.append(self.typing_out)
        self.fed.services.receipts.listeners.append(self.receipt_out)

    def _is_from(self, user_id: Any, origin: str) -> bool:
        return isinstance(user_id, str) and ids.is_valid_user_id(user_id) and ids.server_name_of(user_id) == origin

    # In

    async def typing_in(self, origin: str, content: dict[str, Any]) -> None:
        room_id, user_id, typing = content.get("room_id"), content.get("user_id"), content.get("typing")
        if not isinstance(room_id, str) or not self._is_from(user_id, origin) or not isinstance(typing, bool):
            return
        await self.fed.check_acl(room_id, origin)
        await self.fed.services.typing.set_typing(user_id, room_id, typing, None)

    async def receipts_in(self, origin: str, content: dict[str, Any]) -> None:
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict):
                continue
            try:
                await self.fed.check_acl(room_id, origin)
            except MatrixError:
                continue
            for receipt_type, by_user in by_type.items():
                if receipt_type != "m.read" or not isinstance(by_user, dict):
                    continue  # private receipts never cross servers
                for user_id, receipt in by_user.items():
                    if not self._is_from(user_id, origin) or not isinstance(receipt, dict):
                        continue
                    event_ids = receipt.get("event_ids")
                    data = receipt.get("data") if isinstance(receipt.get("data"), dict) else {}
                    thread_id = data.get("thread_id")
                    if not isinstance(event_ids, list):
                        continue
                    for event_id in event_ids[:1]:
                        try:
                            await self.fed.services.receipts.set_receipt(
                                user_id, room_id, receipt_type, event_id,
                                thread_id if isinstance(thread_id, str) else None)
                        except MatrixError as e:
                            log.info("receipt of %s from %s ignored: %s", user_id, origin, e.error)

    # Out

    async def _room_servers(self, room_id: str) -> list[str]:
        return [s for s in await self.fed.servers_in_room(room_id) if s != self.fed.server_name]

    async def typing_out(self, user_id: str, room_id: str, typing: bool, timeout_ms: int) -> None:
        if ids.server_name_of(user_id) != self.fed.server_name:
            return
        servers = await self._room_servers(room_id)
        if servers:
            await self.fed.sender.send_edu(servers, "m.typing",
                                           {"room_id": room_id, "user_id": user_id, "typing": typing})

    async def receipt_out(self, receipt: Receipt) -> None:
        if ids.server_name_of(receipt.user_id) != self.fed.server_name:
            return
        servers = await self._room_servers(receipt.room_id)
        if not servers:
            return
        data: dict[str, Any] = {"ts": receipt.ts}
        if receipt.thread_id != UNTHREADED:
            data["thread_id"] = receipt.thread_id
        content = {receipt.room_id: {receipt.receipt_type: {
            receipt.user_id: {"event_ids": [receipt.event_id], "data": data}}}}
        await self.fed.sender.send_edu(servers, "m.receipt", content)
