"""Sync and pagination tokens.

A sync token is ``s<events>_<account data>_<receipts>_<typing>_<to-device>_<device lists>_<presence>``:
the position of each stream (DESIGN.md, Streams), in that order; missing
trailing positions read as 0, so tokens of older versions still parse. Pagination tokens are ``s<events>`` and name the point
*after* an event position; both parse the same way, so a client may pass a
sync token to /messages as Synapse allows. Events backfilled over federation sit
below every live position, at negative ones (docs/architecture.md, "Pagination
by stream order"): the pagination token of position -n is ``b<n>``.
"""

from __future__ import annotations

import dataclasses
import operator
import re

from homeserver.errors import invalid_param

# Stream positions are PostgreSQL bigints; a larger number in a token is not one of ours.
MAX_POSITION = 2**63 - 1
# Below every position: the far end of backwards pagination.
MIN_POSITION = -MAX_POSITION
_TOKEN = re.compile(r"s[0-9]+(?:_[0-9]+)*")
_BELOW_ZERO = re.compile(r"b[0-9]+")


@dataclasses.dataclass(frozen=True)
class SyncToken:
    events: int
    account_data: int
    receipts: int = 0
    typing: int = 0
    to_device: int = 0
    device_lists: int = 0
    presence: int = 0

    def positions(self) -> tuple[int, ...]:
        """The positions in token order (``dataclasses.astuple`` without its deep copy)."""
        return _positions(self)

    def serialize(self) -> str:
        return "s" + "_".join(map(str, self.positions()))

    def capped_at(self, current: "SyncToken") -> "SyncToken":
        """This token with no position past ``current`` (each stream separately)."""
        return SyncToken(*map(min, self.positions(), current.positions()))

    @classmethod
    def parse(cls, token: str) -> "SyncToken":
        parts = _parts(token)
        width = len(dataclasses.fields(cls))
        if len(parts) > width:
            raise invalid_param("Invalid token")
        return cls(*(parts + [0] * (width - len(parts))))


_positions = operator.attrgetter(*(f.name for f in dataclasses.fields(SyncToken)))


def parse_pagination_token(token: str) -> int:
    if _BELOW_ZERO.fullmatch(token):
        position = -int(token[1:])
        if position < MIN_POSITION:
            raise invalid_param("Invalid token")
        return position
    return _parts(token)[0]


def pagination_token(position: int) -> str:
    return f"s{position}" if position >= 0 else f"b{-position}"


def _parts(token: str) -> list[int]:
    # ASCII digits only: int() would also take spaces, signs and other scripts' digits.
    if not _TOKEN.fullmatch(token):
        raise invalid_param("Invalid token")
    parts = [int(p) for p in token[1:].split("_")]
    if any(p > MAX_POSITION for p in parts):
        raise invalid_param("Invalid token")
    return parts
