"""Token-bucket rate limiting per key (a client address, a user)."""

from __future__ import annotations

import time

from homeserver.errors import limit_exceeded


class RateLimiter:
    def __init__(self, per_second: float, burst: int, max_keys: int = 10_000):
        self.per_second = per_second
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def check(self, key: str) -> None:
        """Take one token for the key, or raise M_LIMIT_EXCEEDED with the wait."""
        now = time.monotonic()
        tokens, updated = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.per_second)
        if tokens < 1:
            wait_ms = int((1 - tokens) / self.per_second * 1000) + 1
            self._buckets[key] = (tokens, now)
            raise limit_exceeded(wait_ms)
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            # Forget full buckets first: they carry no information.
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst - 1}
        self._buckets[key] = (tokens - 1, now)
