"""Account deactivation: the account can never log in again and leaves every room.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3accountdeactivate
"""

from __future__ import annotations

import logging
from typing import Protocol

from homeserver.errors import MatrixError
from homeserver.services.accounts import AccountService
from homeserver.services.membership import MembershipService
from homeserver.services.profiles import ProfileService
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.users import UserStore

log = logging.getLogger(__name__)


class Eraser(Protocol):
    async def erase_user(self, user_id: str) -> dict[str, int]: ...


class DeactivationService:
    def __init__(
        self, users: UserStore, accounts: AccountService, membership: MembershipService,
        profiles: ProfileService, state: StateStore, rooms: RoomStore,
    ):
        self.users = users
        self.accounts = accounts
        self.membership = membership
        self.profiles = profiles
        self.state = state
        self.rooms = rooms
        # services/erasure.py, set by the container: erase=True hands the whole job to it.
        self.erasure: Eraser | None = None

    async def deactivate(self, user_id: str, erase: bool) -> None:
        if erase and self.erasure is not None:
            # Erasure deactivates too (calling back here with erase=False), after it has
            # redacted the user's messages while they are still in their rooms.
            await self.erasure.erase_user(user_id)
            return
        # Refuse new logins and requests first, then tidy up what remains.
        await self.users.set_deactivated(user_id)
        devices = await self.accounts.list_devices(user_id)
        await self.accounts.delete_devices(user_id, [d.device_id for d in devices])
        for room_id, (membership, _event_id) in (await self.state.get_rooms_for_user(user_id)).items():
            if membership not in ("join", "invite", "knock"):
                continue
            try:
                await self.membership.leave(user_id, room_id)
                await self.rooms.forget(user_id, room_id)
            except MatrixError as e:
                log.warning("deactivating %s: could not leave %s: %s", user_id, room_id, e)
        if erase:
            # Only without an erasure service wired (see above): the profile goes, messages stay.
            await self.profiles.set_field(user_id, "displayname", None)
            await self.profiles.set_field(user_id, "avatar_url", None)
        log.info("deactivated %s", user_id)
