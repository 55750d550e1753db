"""Server admins' view of and hold on local accounts: whois, suspension and locking.

Spec v1.18: https://spec.matrix.org/v1.19/client-server-api/#server-administration
(GET /admin/whois, and the account suspension and locking endpoints).
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.protocol import ids
from homeserver.services.auth import Requester, TokenAuthenticator
from homeserver.storage.devices import DeviceStore
from homeserver.storage.users import User, UserStore


class UserAdminService:
    def __init__(self, server_name: str, users: UserStore, devices: DeviceStore, tokens: TokenAuthenticator):
        self.server_name = server_name
        self.users = users
        self.devices = devices
        self.tokens = tokens

    async def whois(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """Devices and where they were last seen from; for admins, or the user themself."""
        self._check_user_id(user_id)
        if not requester.is_admin and requester.user_id != user_id:
            raise forbidden("You are not a server admin")
        if ids.server_name_of(user_id) != self.server_name or await self.users.get_user(user_id) is None:
            raise not_found("User not found")
        devices: dict[str, Any] = {}
        for device in await self.devices.list_devices(user_id):
            connections = []
            if device.last_seen_ts is not None and device.last_seen_ip is not None:
                # The user agent is not recorded here: null, as the spec allows for unknown values.
                connections.append({"ip": device.last_seen_ip, "last_seen": device.last_seen_ts,
                                    "user_agent": None})
            devices[device.device_id] = {"sessions": [{"connections": connections}]}
        return {"user_id": user_id, "devices": devices}

    async def get_flags(self, requester: Requester, user_id: str) -> User:
        return await self._local_user(requester, user_id)

    async def set_suspended(self, requester: Requester, user_id: str, suspended: bool) -> None:
        await self._local_user(requester, user_id)
        await self.users.set_suspended(user_id, suspended)
        await self._drop_cached_tokens(user_id)

    async def set_locked(self, requester: Requester, user_id: str, locked: bool) -> None:
        await self._local_user(requester, user_id)
        await self.users.set_locked(user_id, locked)
        await self._drop_cached_tokens(user_id)

    async def _local_user(self, requester: Requester, user_id: str) -> User:
        if not requester.is_admin:
            raise forbidden("You are not a server admin")
        self._check_user_id(user_id)
        if ids.server_name_of(user_id) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "Only local users can be suspended or locked")
        user = await self.users.get_user(user_id)
        if user is None:
            raise not_found("User not found")
        return user

    @staticmethod
    def _check_user_id(user_id: str) -> None:
        try:
            ids.parse_user_id(user_id)
        except ids.InvalidIdError:
            raise MatrixError(400, "M_INVALID_PARAM", "Not a valid user ID")

    async def _drop_cached_tokens(self, user_id: str) -> None:
        # The token cache holds the flags: the change must apply from the next request.
        self.tokens.forget(await self.devices.token_hashes_of_user(user_id))
