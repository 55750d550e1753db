"""Per-destination backoff: a server that failed is left alone for a while.

After a failure a destination is "down" for 10 s; each further failure doubles
that, up to a day (10 s, 20 s, 40 s, ... the cap is reached after 14 failures
in a row, about a day and a half of trying). Any success ends it. Failures of
requests that were already in flight while the destination was down do not
count again, so a burst of parallel failures costs one step, not ten.

The state lives in memory: after a restart every destination gets a fresh try,
which is what we want (the durable queues hold what still has to be sent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

INITIAL_DELAY_S = 10.0
MULTIPLIER = 2.0
MAX_DELAY_S = 24 * 3600.0


@dataclass
class _State:
    failures: int
    retry_at: float


class Backoff:
    def __init__(
        self,
        initial: float = INITIAL_DELAY_S,
        multiplier: float = MULTIPLIER,
        maximum: float = MAX_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.initial = initial
        self.multiplier = multiplier
        self.maximum = maximum
        self._clock = clock
        self._states: dict[str, _State] = {}

    def is_down(self, destination: str) -> bool:
        """Whether requests to ``destination`` should be skipped for now."""
        return self.retry_in(destination) > 0

    def retry_in(self, destination: str) -> float:
        """Seconds until the destination may be tried again (0: now)."""
        state = self._states.get(destination)
        return max(0.0, state.retry_at - self._clock()) if state is not None else 0.0

    def failures(self, destination: str) -> int:
        state = self._states.get(destination)
        return state.failures if state is not None else 0

    def record_failure(self, destination: str) -> float:
        """Count a failure; returns the delay before the next try."""
        now = self._clock()
        state = self._states.get(destination)
        if state is not None and state.retry_at > now:
            return state.retry_at - now  # already down: an in-flight request failing too
        failures = (state.failures if state is not None else 0) + 1
        delay = min(self.initial * self.multiplier ** min(failures - 1, 64), self.maximum)
        self._states[destination] = _State(failures, now + delay)
        return delay

    def record_success(self, destination: str) -> None:
        self._states.pop(destination, None)
