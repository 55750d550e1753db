"""Refresh tokens and login tokens: the ways to a new access token without a password.

Spec: https://spec.matrix.org/v1.19/client-server-api/#refreshing-access-tokens
and https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv1loginget_token (MSC3882).
"""

from __future__ import annotations

import dataclasses
import secrets

from homeserver.errors import MatrixError, forbidden, unknown_token
from homeserver.services.auth import TokenAuthenticator, hash_token, new_access_token, new_refresh_token
from homeserver.services.clock import now_ms
from homeserver.storage.refresh_tokens import LoginTokenStore, RefreshTokenStore
from homeserver.storage.users import UserStore

# As Synapse's login_via_existing_session.token_timeout default: long enough to scan a QR code.
LOGIN_TOKEN_LIFETIME_MS = 2 * 60 * 1000


@dataclasses.dataclass(frozen=True)
class RefreshedTokens:
    access_token: str
    refresh_token: str
    expires_in_ms: int


class RefreshService:
    def __init__(self, store: RefreshTokenStore, users: UserStore, tokens: TokenAuthenticator,
                 access_token_lifetime_ms: int | None):
        self.store = store
        self.users = users
        self.tokens = tokens
        self.access_token_lifetime_ms = access_token_lifetime_ms

    async def refresh(self, refresh_token: str) -> RefreshedTokens:
        """POST /refresh: a new access token and a new refresh token for the same device.

        The old refresh token keeps working until the new access token is first used
        (as Synapse), so a client that lost this answer can try again.
        """
        old = await self.store.get(hash_token(refresh_token))
        if old is None or self.access_token_lifetime_ms is None:
            raise unknown_token("Unknown refresh token", soft_logout=False)
        user = await self.users.get_user(old.user_id)
        if user is None or user.deactivated:
            raise unknown_token("This account has been deactivated", soft_logout=False)
        if user.locked:
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        localpart = old.user_id[1:].split(":", 1)[0]
        access, refresh = new_access_token(localpart), new_refresh_token(localpart)
        now = now_ms()
        lifetime = self.access_token_lifetime_ms
        if not await self.store.rotate(old, hash_token(refresh), hash_token(access), now + lifetime, now):
            raise unknown_token("Unknown refresh token", soft_logout=False)
        return RefreshedTokens(access, refresh, lifetime)


class LoginTokenService:
    def __init__(self, store: LoginTokenStore, users: UserStore):
        self.store = store
        self.users = users

    async def issue(self, user_id: str) -> tuple[str, int]:
        """A single-use m.login.token for a new device of user_id, and its lifetime in ms."""
        token = secrets.token_urlsafe(32)
        now = now_ms()
        await self.store.create(hash_token(token), user_id, now + LOGIN_TOKEN_LIFETIME_MS, now)
        return token, LOGIN_TOKEN_LIFETIME_MS

    async def consume(self, token: str) -> str:
        """The user a login token was issued to; the token is spent. 403 M_FORBIDDEN otherwise."""
        user_id = await self.store.consume(hash_token(token), now_ms())
        if user_id is None:
            raise forbidden("Invalid or expired login token")
        user = await self.users.get_user(user_id)
        if user is None or user.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        return user_id
