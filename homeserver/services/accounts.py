"""Accounts: registration, login, logout, passwords and devices.

Spec: https://spec.matrix.org/v1.19/client-server-api/#account-registration-and-management
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Awaitable, Callable

from homeserver.config import PasswordConfig
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.auth import (
    PasswordHasher, Requester, TokenAuthenticator, hash_token, new_access_token, new_device_id, new_refresh_token,
)
from homeserver.services.clock import now_ms
from homeserver.services.password_policy import check_password as check_password_policy
from homeserver.storage.cache import LruCache
from homeserver.storage.devices import Device, DeviceStore
from homeserver.storage.users import UserStore

log = logging.getLogger(__name__)

MAX_PASSWORD_LENGTH = 512
# A device's "last seen" is written at most this often, not on every request.
LAST_SEEN_INTERVAL_MS = 5 * 60 * 1000


@dataclasses.dataclass(frozen=True)
class Session:
    user_id: str
    device_id: str
    access_token: str
    # Only for clients that asked for refresh_token: true, when the server offers it.
    refresh_token: str | None = None
    expires_in_ms: int | None = None

    def login_json(self, server_name: str) -> dict:
        """The answer of /login and /register (spec: "Refreshing access tokens")."""
        body = {
            "user_id": self.user_id, "access_token": self.access_token, "device_id": self.device_id,
            "home_server": server_name,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
            body["expires_in_ms"] = self.expires_in_ms
        return body


class AccountService:
    def __init__(
        self, server_name: str, users: UserStore, devices: DeviceStore, hasher: PasswordHasher,
        tokens: TokenAuthenticator, access_token_lifetime_ms: int | None = None,
        password_policy: PasswordConfig = PasswordConfig(),
    ):
        self.server_name = server_name
        self.password_policy = password_policy
        # Lifetime of access tokens issued with a refresh token; None: refresh tokens are not offered.
        self.access_token_lifetime_ms = access_token_lifetime_ms
        self.users = users
        self.devices = devices
        self.hasher = hasher
        self.tokens = tokens
        self._last_seen: LruCache[tuple[str, str], tuple[int, str]] = LruCache(10_000)
        # Told (user id, device ids) after devices are deleted: their users' device lists changed.
        self.device_deletion_listeners: list[Callable[[str, list[str]], Awaitable[None]]] = []

    def user_id_for(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def check_new_localpart(self, localpart: str) -> str:
        """The full user id for a wanted localpart, or M_INVALID_USERNAME."""
        if not ids.is_valid_localpart(localpart):
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID may contain only a-z, 0-9, . _ = - / +")
        user_id = self.user_id_for(localpart)
        if len(user_id.encode()) > 255:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        return user_id

    async def is_available(self, localpart: str) -> bool:
        user_id = self.check_new_localpart(localpart)
        return not await self.users.find_user_case_insensitive(user_id)

    async def check_registration(self, localpart: str | None, password: str | None) -> None:
        """Refuse early what create_account would refuse.

        The spec asks for M_USER_IN_USE and M_INVALID_USERNAME before user-interactive
        auth; checking first also keeps a refused request from spending a registration token.
        """
        if localpart is not None and not await self.is_available(localpart):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        if password is not None:
            self.check_new_password(password)

    def check_new_password(self, password: str) -> None:
        """Too long for the hasher, or against the admin's password_config: 400."""
        if len(password) > MAX_PASSWORD_LENGTH:
            raise invalid_param("Password is too long")
        check_password_policy(password, self.password_policy)

    async def create_account(
        self, localpart: str, password: str | None, is_admin: bool = False, displayname: str | None = None
    ) -> str:
        user_id = self.check_new_localpart(localpart)
        if password is not None:
            self.check_new_password(password)
        if await self.users.find_user_case_insensitive(user_id):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        password_hash = await self.hasher.hash(password) if password is not None else None
        if not await self.users.create_user(
            user_id, password_hash, now_ms(), is_admin=is_admin, displayname=displayname or localpart
        ):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        log.info("registered %s", user_id)
        return user_id

    async def check_password(self, user_identifier: str, password: str) -> str:
        """The user id whose password this is, or M_FORBIDDEN (same answer for unknown users)."""
        user_id = await self._resolve_login_user(user_identifier)
        user = await self.users.get_user(user_id) if user_id else None
        ok = await self.hasher.verify(password, user.password_hash if user else None)
        if not ok or user is None:
            raise forbidden("Invalid username or password")
        if user.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        return user.user_id

    async def _resolve_login_user(self, identifier: str) -> str | None:
        """A localpart or user id, matched case-insensitively as Synapse does."""
        user_id = identifier if identifier.startswith("@") else self.user_id_for(identifier)
        try:
            parsed = ids.parse_user_id(user_id)
        except ids.InvalidIdError:
            return None
        if parsed.server_name != self.server_name:
            return None
        matches = await self.users.find_user_case_insensitive(user_id)
        if user_id in matches:
            return user_id
        return matches[0] if len(matches) == 1 else None

    async def start_session(self, user_id: str, device_id: str | None, display_name: str | None,
                            refresh: bool = False) -> Session:
        """A new access token (and, when asked for and offered, a refresh token) for a device."""
        device_id = device_id or new_device_id()
        localpart = user_id[1:].split(":", 1)[0]
        token = new_access_token(localpart)
        lifetime = self.access_token_lifetime_ms if refresh else None
        refresh_token = new_refresh_token(localpart) if lifetime is not None else None
        now = now_ms()
        # Tokens of a reused device id die with the login that replaces them.
        self.tokens.forget(await self.devices.token_hashes_of_device(user_id, device_id))
        await self.devices.create_device_with_token(
            user_id, device_id, display_name, hash_token(token), now,
            refresh_hash=hash_token(refresh_token) if refresh_token else None,
            expires_ts=now + lifetime if lifetime is not None else None,
        )
        return Session(user_id, device_id, token, refresh_token, lifetime)

    async def logout(self, requester: Requester) -> None:
        # The spec says the device is deleted along with the token.
        await self.delete_devices(requester.user_id, [requester.device_id])

    async def logout_all(self, requester: Requester) -> None:
        devices = await self.devices.list_devices(requester.user_id)
        await self.delete_devices(requester.user_id, [d.device_id for d in devices])

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        hashes: list[bytes] = []
        for device_id in device_ids:
            hashes.extend(await self.devices.token_hashes_of_device(user_id, device_id))
        await self.devices.delete_devices(user_id, device_ids)
        self.tokens.forget(hashes)
        for listener in self.device_deletion_listeners:
            await listener(user_id, device_ids)

    async def change_password(self, requester_user: str, new_password: str, logout_devices: bool,
                              keep_device: str | None) -> None:
        self.check_new_password(new_password)
        await self.users.set_password_hash(requester_user, await self.hasher.hash(new_password))
        if logout_devices:
            devices = await self.devices.list_devices(requester_user)
            await self.delete_devices(requester_user, [d.device_id for d in devices if d.device_id != keep_device])

    async def record_seen(self, requester: Requester, ip: str) -> None:
        """Remember when and from where a device was last used (shown in Element's session list)."""
        key = (requester.user_id, requester.device_id)
        now = now_ms()
        # Not yet written by this process: as stored (after a restart, written moments ago).
        previous = self._last_seen.get(key) or requester.last_seen
        if previous is not None and previous[1] == ip and now - previous[0] < LAST_SEEN_INTERVAL_MS:
            return
        self._last_seen.set(key, (now, ip))
        await self.devices.record_seen(requester.user_id, requester.device_id, ip, now)

    async def list_devices(self, user_id: str) -> list[Device]:
        return await self.devices.list_devices(user_id)

    async def get_device(self, user_id: str, device_id: str) -> Device:
        device = await self.devices.get_device(user_id, device_id)
        if device is None:
            raise not_found("Device not found")
        return device

    async def rename_device(self, user_id: str, device_id: str, display_name: str | None) -> None:
        if not await self.devices.rename_device(user_id, device_id, display_name):
            raise not_found("Device not found")
