"""Sync and pagination tokens.

A sync token is ``s<events>_<account data>``: the position of each stream
(DESIGN.md, Streams). Pagination tokens are ``s<events>`` and name the point
*after* an event position; both parse the same way, so a client may pass a
sync token to /messages as Synapse allows.
"""

from __future__ import annotations

import dataclasses

from homeserver.errors import invalid_param


@dataclasses.dataclass(frozen=True)
class SyncToken:
    events: int
    account_data: int

    def serialize(self) -> str:
        return f"s{self.events}_{self.account_data}"

    @classmethod
    def parse(cls, token: str) -> "SyncToken":
        parts = _parts(token)
        parts += [0] * (2 - len(parts))
        return cls(parts[0], parts[1])


def parse_pagination_token(token: str) -> int:
    return _parts(token)[0]


def pagination_token(position: int) -> str:
    return f"s{position}"


def _parts(token: str) -> list[int]:
    if not token.startswith("s"):
        raise invalid_param("Invalid token")
    try:
        parts = [int(p) for p in token[1:].split("_")]
    except ValueError:
        raise invalid_param("Invalid token")
    if not parts or any(p < 0 for p in parts):
        raise invalid_param("Invalid token")
    return parts
