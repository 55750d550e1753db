"""OpenID tokens: issued to our users, exchanged by third parties for the user id.

Spec: https://spec.matrix.org/v1.19/client-server-api/#openid and
https://spec.matrix.org/v1.19/server-server-api/#openid

A token proves only who its owner is, to whoever calls our federation
``GET /openid/userinfo`` with it; it is no access token (it cannot sync,
nor ask for another token).
"""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.errors import MatrixError
from homeserver.services.auth import hash_token
from homeserver.services.clock import now_ms
from homeserver.storage.openid import OpenIdStore

TOKEN_LIFETIME_S = 3600


class OpenIdService:
    def __init__(self, store: OpenIdStore, server_name: str):
        self.store = store
        self.server_name = server_name

    async def request_token(self, user_id: str) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        now = now_ms()
        await self.store.insert(hash_token(token), user_id, now + TOKEN_LIFETIME_S * 1000, now)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self.server_name,
            "expires_in": TOKEN_LIFETIME_S,
        }

    async def userinfo(self, token: str | None) -> dict[str, str]:
        """{"sub": user id} of a valid token; 401 as Synapse answers otherwise."""
        if not token:
            raise MatrixError(401, "M_MISSING_TOKEN", "Access token required")
        user_id = await self.store.owner(hash_token(token), now_ms())
        if user_id is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired")
        return {"sub": user_id}
