"""TURN credentials for VoIP calls.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3voipturnserver

With a shared secret, credentials follow the TURN REST API scheme that coturn
checks with `use-auth-secret` (draft-uberti-behave-turn-rest-00): the username is
"<expiry as unix seconds>:<user id>" and the password is base64(HMAC-SHA1(secret,
username)). coturn recomputes the password from the username and refuses it once
the expiry has passed, so the homeserver and the TURN server share nothing but
the secret, and a leaked credential is worthless after user_lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Callable

from homeserver.config import TurnConfig
from homeserver.services.clock import now_ms
from homeserver.services.ratelimit import RateLimiter


def ephemeral_credentials(shared_secret: str, user_id: str, expires_at: int) -> tuple[str, str]:
    """The (username, password) coturn accepts until `expires_at` (unix seconds)."""
    username = f"{expires_at}:{user_id}"
    mac = hmac.new(shared_secret.encode(), username.encode(), hashlib.sha1)
    return username, base64.b64encode(mac.digest()).decode("ascii")


class TurnService:
    def __init__(self, config: TurnConfig, clock: Callable[[], int] = now_ms):
        self.config = config
        self.clock = clock
        self.limiter = RateLimiter(config.rate_limit.per_second, config.rate_limit.burst)

    def credentials(self, user_id: str) -> dict[str, Any]:
        """The response body of GET /voip/turnServer for this user."""
        self.limiter.check(user_id)
        config = self.config
        if not config.enabled:
            # As Synapse: an empty object, not an error, so clients simply call without a relay.
            return {}
        if config.shared_secret is not None:
            expires_at = self.clock() // 1000 + config.user_lifetime
            username, password = ephemeral_credentials(config.shared_secret, user_id, expires_at)
        else:
            username, password = config.username, config.password
        # With static credentials the ttl still tells clients when to ask again,
        # so that a changed password reaches them.
        ttl = config.user_lifetime
        return {"username": username, "password": password, "uris": list(config.uris), "ttl": ttl}
