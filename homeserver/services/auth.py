"""Access tokens and passwords: who is making a request.

Tokens are random; only their SHA-256 is stored. Passwords are hashed with
bcrypt in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import zlib
from typing import Callable

import bcrypt

from homeserver.errors import MatrixError, unknown_token
from homeserver.protocol.canonical import encode_base64
from homeserver.services.clock import now_ms
from homeserver.storage.cache import LruCache
from homeserver.storage.devices import DeviceStore, TokenOwner
from homeserver.storage.refresh_tokens import RefreshTokenStore


@dataclasses.dataclass(frozen=True)
class Requester:
    user_id: str
    device_id: str
    is_admin: bool
    token_hash: bytes
    # Admin-suspended (spec v1.18): may read and leave, not send, join or invite.
    suspended: bool = False
    # When and from where the device was last seen, as stored when its token was read.
    last_seen: tuple[int, str] | None = None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_access_token(localpart: str, prefix: str = "syt") -> str:
    """A token shaped like Synapse's (syt_<localpart>_<random>_<crc>), so log scanners spot leaks."""
    body = f"{prefix}_{encode_base64(localpart.encode(), urlsafe=True)}_{secrets.token_urlsafe(24)}"
    return f"{body}_{zlib.crc32(body.encode()):08x}"


def new_refresh_token(localpart: str) -> str:
    return new_access_token(localpart, prefix="syr")


def new_device_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(10))


# bcrypt reads only the first 72 bytes of a password. bcrypt >= 5 raises on longer
# input instead of ignoring the rest, so cut it as bcrypt 4 and Synapse always did:
# hashes made by either still verify.
BCRYPT_MAX_BYTES = 72


def _bcrypt_input(password: str) -> bytes:
    return password.encode("utf-8")[:BCRYPT_MAX_BYTES]


class PasswordHasher:
    def __init__(self, rounds: int):
        self.rounds = rounds
        # A fixed hash to compare against when the user does not exist, so that
        # timing does not tell which user names exist.
        self._dummy = bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds)).decode()

    async def hash(self, password: str) -> str:
        def work() -> str:
            return bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(self.rounds)).decode()

        return await asyncio.to_thread(work)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        def work() -> bool:
            try:
                return bcrypt.checkpw(_bcrypt_input(password), (password_hash or self._dummy).encode())
            except ValueError:
                return False

        ok = await asyncio.to_thread(work)
        return ok and password_hash is not None


class TokenAuthenticator:
    """Resolves access tokens to requesters, with a small cache invalidated on logout."""

    def __init__(self, devices: DeviceStore, refresh_tokens: RefreshTokenStore | None = None,
                 cache_size: int = 10_000):
        self.devices = devices
        self.refresh_tokens = refresh_tokens
        self._cache: LruCache[bytes, TokenOwner] = LruCache(cache_size)
        # Tells the other processes sharing the database (services/cluster_hooks.py).
        self.broadcast: Callable[[list[bytes]], None] | None = None

    async def authenticate(self, token: str | None, allow_locked: bool = False) -> Requester:
        """The requester of an access token.

        allow_locked: a locked user may still log out (spec v1.8 "Account locking");
        every other request is refused with M_USER_LOCKED.
        """
        if not token:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        token_hash = hash_token(token)
        owner = self._cache.get(token_hash)
        if owner is None:
            owner = await self.devices.get_token_owner(token_hash)
            if owner is None:
                raise unknown_token("Unrecognised access token", soft_logout=False)
            if owner.refresh_token_id is not None and self.refresh_tokens is not None and not self._expired(owner):
                # Spec "Refreshing access tokens": the first use of a refreshed access
                # token ends the refresh token (and the access token) it replaced.
                self.forget(await self.refresh_tokens.retire_predecessors(owner.refresh_token_id))
            self._cache.set(token_hash, owner)
        if self._expired(owner):
            # soft_logout: the client refreshes (or logs in again) and keeps its device and keys.
            raise unknown_token("Access token has expired", soft_logout=True)
        if owner.deactivated:
            raise unknown_token("This account has been deactivated")
        if owner.locked and not allow_locked:
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        last_seen = ((owner.last_seen_ts, owner.last_seen_ip)
                     if owner.last_seen_ts is not None and owner.last_seen_ip is not None else None)
        return Requester(owner.user_id, owner.device_id, owner.is_admin, token_hash, owner.suspended, last_seen)

    @staticmethod
    def _expired(owner: TokenOwner) -> bool:
        return owner.expires_ts is not None and owner.expires_ts <= now_ms()

    def forget(self, token_hashes: list[bytes], local_only: bool = False) -> None:
        for token_hash in token_hashes:
            self._cache.pop(token_hash)
        if token_hashes and self.broadcast is not None and not local_only:
            self.broadcast(token_hashes)
