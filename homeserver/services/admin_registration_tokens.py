"""Registration tokens managed by server admins (Synapse docs: docs/admin_api/registration_tokens.md).

A token lets someone register while registration otherwise needs one
(spec: m.login.registration_token); uses_allowed and expiry_time limit it.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from homeserver.errors import invalid_param, not_found
from homeserver.services.admin_audit import audit
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.storage.admin_registration_tokens import AdminRegistrationTokenStore
from homeserver.storage.registration import RegistrationStore

TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
TOKEN_ALPHABET = string.ascii_letters + string.digits + "._~-"
DEFAULT_LENGTH = 16
MAX_LENGTH = 64
MAX_INT = 2**31 - 1  # uses_allowed is an INTEGER column
UNSET = object()


class RegistrationTokenAdmin:
    def __init__(self, store: AdminRegistrationTokenStore, registration: RegistrationStore):
        self.store = store
        self.registration = registration

    async def list(self, valid: bool | None) -> dict[str, Any]:
        now = now_ms()
        tokens = [t for t in await self.store.list_tokens() if valid is None or t.is_valid(now) == valid]
        return {"registration_tokens": [t.to_json() for t in tokens]}

    async def get(self, token: str) -> dict[str, Any]:
        found = await self.store.get_token(token)
        if found is None:
            raise not_found(f"No such registration token: {token}")
        return found.to_json()

    async def create(self, who: Requester, token: str | None, uses_allowed: Any, expiry_time: Any,
                     length: Any) -> dict[str, Any]:
        if token is not None:
            if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
                raise invalid_param("token must consist of characters matching [A-Za-z0-9._~-], at most 64")
        else:
            if length is None:
                length = DEFAULT_LENGTH
            if not _is_int(length) or not 0 < length <= MAX_LENGTH:
                raise invalid_param(f"length must be an integer > 0 and <= {MAX_LENGTH}")
        uses = _uses_allowed(uses_allowed)
        expiry = _expiry_time(expiry_time)
        if token is not None:
            if not await self.registration.create_token(token, uses, expiry):
                raise invalid_param(f"Token already in use: {token}")
        else:
            while True:  # a clash of random tokens is possible only for very short lengths
                token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))
                if await self.registration.create_token(token, uses, expiry):
                    break
        audit(who.user_id, "create_registration_token", token, uses_allowed=uses, expiry_time=expiry)
        return await self.get(token)

    async def update(self, who: Requester, token: str, uses_allowed: Any = UNSET,
                     expiry_time: Any = UNSET) -> dict[str, Any]:
        changes: dict[str, int | None] = {}
        if uses_allowed is not UNSET:
            changes["uses_allowed"] = _uses_allowed(uses_allowed)
        if expiry_time is not UNSET:
            changes["expiry_time"] = _expiry_time(expiry_time)
        updated = await self.store.update_token(token, changes)
        if updated is None:
            raise not_found(f"No such registration token: {token}")
        if changes:
            audit(who.user_id, "update_registration_token", token, **changes)
        return updated.to_json()

    async def delete(self, who: Requester, token: str) -> None:
        if not await self.store.delete_token(token):
            raise not_found(f"No such registration token: {token}")
        audit(who.user_id, "delete_registration_token", token)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _uses_allowed(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_INT:
        raise invalid_param("uses_allowed must be a non-negative integer or null")
    return value


def _expiry_time(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value > 2**63 - 1:
        raise invalid_param("expiry_time must be an integer or null")
    if value < now_ms():
        raise invalid_param("expiry_time must not be in the past")
    return value
