"""Server admins' management of local accounts, shaped like Synapse's admin API.

Synapse docs: docs/admin_api/user_admin_api.md (users v2 list, query, create or modify,
deactivate, reset password, admin status, devices, joined rooms, pushers).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.accounts import AccountService
from homeserver.services.admin_audit import audit
from homeserver.services.auth import Requester
from homeserver.services.deactivation import DeactivationService
from homeserver.services.profiles import ProfileService
from homeserver.services.pushers import PushersService
from homeserver.services.user_admin import UserAdminService
from homeserver.storage.admin_users import ORDER_COLUMNS, AdminUserStore, UserQuery, UserRow
from homeserver.storage.devices import Device
from homeserver.storage.state import StateStore
from homeserver.storage.users import UserStore

USER_TYPES = (None, "bot", "support")
# What the users list may be ordered by (order_by), and its query, for the route module.
USER_ORDER_BY = frozenset(ORDER_COLUMNS)
__all__ = ["AdminUserService", "UserChanges", "UserQuery", "USER_ORDER_BY"]


@dataclasses.dataclass
class UserChanges:
    """What PUT /v2/users/{userId} asks for; a field left None is not changed."""

    password: str | None = None
    logout_devices: bool = True
    displayname: str | None = None
    avatar_url: str | None = None
    admin: bool | None = None
    deactivated: bool | None = None
    locked: bool | None = None
    set_user_type: bool = False
    user_type: str | None = None


def user_json(row: UserRow, detailed: bool = False) -> dict[str, Any]:
    """A user as Synapse's admin API lists it; creation_ts is in seconds, as Synapse's."""
    out: dict[str, Any] = {
        "name": row.user_id,
        "user_type": row.user_type,
        "is_guest": False,
        "admin": row.is_admin,
        "deactivated": row.deactivated,
        "erased": row.erased,
        "shadow_banned": False,
        "displayname": row.displayname,
        "avatar_url": row.avatar_url,
        "creation_ts": row.created_ts // 1000,
        "approved": True,
        "locked": row.locked,
        "suspended": row.suspended,
        "last_seen_ts": row.last_seen_ts,
    }
    if detailed:
        out.update(threepids=[], external_ids=[], appservice_id=None, consent_server_notice_sent=None,
                   consent_version=None, consent_ts=None)
    return out


def device_json(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.device_id, "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip, "last_seen_ts": device.last_seen_ts,
        "last_seen_user_agent": None, "user_id": device.user_id,
    }


class AdminUserService:
    def __init__(
        self, server_name: str, store: AdminUserStore, users: UserStore, accounts: AccountService,
        profiles: ProfileService, deactivation: DeactivationService, user_admin: UserAdminService,
        state: StateStore, pushers: PushersService,
    ):
        self.server_name = server_name
        self.store = store
        self.users = users
        self.accounts = accounts
        self.profiles = profiles
        self.deactivation = deactivation
        self.user_admin = user_admin
        self.state = state
        self.pushers = pushers

    # Reading

    async def list_users(self, query: UserQuery) -> dict[str, Any]:
        rows, total = await self.store.list_users(query, self.server_name)
        out: dict[str, Any] = {"users": [user_json(r) for r in rows], "total": total}
        if query.offset + len(rows) < total:
            out["next_token"] = str(query.offset + len(rows))
        return out

    async def get_user(self, user_id: str) -> dict[str, Any]:
        return user_json(await self._existing(user_id), detailed=True)

    async def joined_rooms(self, user_id: str) -> dict[str, Any]:
        self.check_user_id(user_id)
        rooms = sorted(room_id for room_id, (membership, _) in (await self.state.get_rooms_for_user(user_id)).items()
                       if membership == "join")
        return {"joined_rooms": rooms, "total": len(rooms)}

    async def memberships(self, user_id: str) -> dict[str, Any]:
        self.check_user_id(user_id)
        rooms = await self.state.get_rooms_for_user(user_id)
        return {"memberships": {room_id: membership for room_id, (membership, _) in sorted(rooms.items())}}

    async def is_admin(self, user_id: str) -> bool:
        self.check_local(user_id, "Only local users can be admins of this homeserver")
        return (await self._existing(user_id)).is_admin

    async def pushers_of(self, user_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        pushers = await self.pushers.list(user_id)
        return {"pushers": pushers, "total": len(pushers)}

    # Writing

    async def create_or_modify(self, who: Requester, user_id: str, changes: UserChanges) -> tuple[dict[str, Any], bool]:
        """The user after the change, and whether it was created."""
        self.check_local(user_id, "This endpoint can only be used with local users")
        if changes.set_user_type and changes.user_type not in USER_TYPES:
            raise invalid_param("Invalid user type")
        if changes.password is not None:
            self.accounts.check_new_password(changes.password)
        if changes.avatar_url and not changes.avatar_url.startswith("mxc://"):
            raise invalid_param("avatar_url must be an mxc:// URI")
        existing = await self.users.get_user(user_id)
        if existing is None:
            await self._create(who, user_id, changes)
            created = True
        else:
            await self._modify(who, existing.user_id, existing.deactivated, changes)
            created = False
        return user_json(await self._existing(user_id), detailed=True), created

    async def _create(self, who: Requester, user_id: str, changes: UserChanges) -> None:
        localpart = ids.parse_user_id(user_id).localpart
        await self.accounts.create_account(
            localpart, changes.password, is_admin=bool(changes.admin), displayname=changes.displayname or None)
        audit(who.user_id, "create_user", user_id, admin=bool(changes.admin))
        if changes.avatar_url:
            await self.profiles.set_field(user_id, "avatar_url", changes.avatar_url)
        if changes.set_user_type:
            await self.store.set_user_type(user_id, changes.user_type)
        if changes.locked:
            await self.user_admin.set_locked(who, user_id, True)
        if changes.deactivated:
            await self.deactivation.deactivate(user_id, erase=False)

    async def _modify(self, who: Requester, user_id: str, deactivated: bool, changes: UserChanges) -> None:
        row = await self._existing(user_id)
        if changes.admin is False and row.is_admin and user_id == who.user_id:
            raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself.")
        if changes.deactivated is False and deactivated:
            if changes.password is None:
                raise MatrixError(400, "M_UNKNOWN", "Must provide a password to re-activate an account.")
            await self.store.reactivate(user_id, await self.accounts.hasher.hash(changes.password))
            audit(who.user_id, "reactivate_user", user_id)
        elif changes.password is not None:
            await self.accounts.change_password(user_id, changes.password, changes.logout_devices, keep_device=None)
            audit(who.user_id, "set_password", user_id, logout_devices=changes.logout_devices)
        for field in ("displayname", "avatar_url"):
            value = getattr(changes, field)
            if value is None:
                continue
            value = value or None  # "" removes the field, as Synapse's
            if value != getattr(row, field):
                await self.profiles.set_field(user_id, field, value)
                audit(who.user_id, f"set_{field}", user_id)
        if changes.admin is not None and changes.admin != row.is_admin:
            await self.users.set_admin(user_id, changes.admin)
            await self.user_admin._drop_cached_tokens(user_id)
            audit(who.user_id, "set_admin", user_id, admin=changes.admin)
        if changes.set_user_type and changes.user_type != row.user_type:
            await self.store.set_user_type(user_id, changes.user_type)
            audit(who.user_id, "set_user_type", user_id, user_type=changes.user_type)
        if changes.locked is not None and changes.locked != row.locked:
            await self.user_admin.set_locked(who, user_id, changes.locked)
            audit(who.user_id, "set_locked", user_id, locked=changes.locked)
        if changes.deactivated and not deactivated:
            await self.deactivation.deactivate(user_id, erase=False)
            audit(who.user_id, "deactivate", user_id, erase=False)

    async def deactivate(self, who: Requester, user_id: str, erase: bool) -> None:
        self.check_local(user_id, "Can only deactivate local users")
        await self._existing(user_id)
        # With erase, deactivation hands over to services/erasure.py (messages redacted, media deleted).
        await self.deactivation.deactivate(user_id, erase=erase)
        audit(who.user_id, "deactivate", user_id, erase=erase)

    async def reset_password(self, who: Requester, user_id: str, new_password: str, logout_devices: bool) -> None:
        self.check_local(user_id, "Can only reset the password of local users")
        row = await self._existing(user_id)
        if row.deactivated:
            raise MatrixError(400, "M_UNKNOWN", "Cannot reset the password of a deactivated user")
        await self.accounts.change_password(user_id, new_password, logout_devices, keep_device=None)
        audit(who.user_id, "reset_password", user_id, logout_devices=logout_devices)

    async def set_admin(self, who: Requester, user_id: str, admin: bool) -> None:
        self.check_local(user_id, "Only local users can be admins of this homeserver")
        row = await self._existing(user_id)
        if not admin and user_id == who.user_id:
            raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself.")
        if admin != row.is_admin:
            await self.users.set_admin(user_id, admin)
            await self.user_admin._drop_cached_tokens(user_id)
        audit(who.user_id, "set_admin", user_id, admin=admin)

    # Devices

    async def devices(self, user_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        devices = [device_json(d) for d in await self.accounts.list_devices(user_id)]
        return {"devices": devices, "total": len(devices)}

    async def device(self, user_id: str, device_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        return device_json(await self.accounts.get_device(user_id, device_id))

    async def rename_device(self, who: Requester, user_id: str, device_id: str, display_name: str | None) -> None:
        await self._existing(user_id)
        await self.accounts.rename_device(user_id, device_id, display_name)
        audit(who.user_id, "rename_device", user_id, device_id=device_id)

    async def delete_devices(self, who: Requester, user_id: str, device_ids: list[str]) -> None:
        await self._existing(user_id)
        await self.accounts.delete_devices(user_id, device_ids)
        audit(who.user_id, "delete_devices", user_id, device_ids=device_ids)

    # Checks

    def check_user_id(self, user_id: str) -> None:
        if not ids.is_valid_user_id(user_id):
            raise invalid_param(f"{user_id!r} is not a valid user id")

    def check_local(self, user_id: str, message: str) -> None:
        self.check_user_id(user_id)
        if ids.server_name_of(user_id) != self.server_name:
            raise invalid_param(message)

    async def _existing(self, user_id: str) -> UserRow:
        self.check_local(user_id, "Can only look up local users")
        row = await self.store.get_user(user_id)
        if row is None:
            raise not_found("User not found")
        return row

