"""Registration tokens as the admin API manages them (the table of migration 0001).

Creating a token and using one at registration are RegistrationStore's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class RegistrationToken:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None

    def is_valid(self, now: int) -> bool:
        if self.expiry_time is not None and self.expiry_time < now:
            return False
        return self.uses_allowed is None or self.pending + self.completed < self.uses_allowed

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_COLUMNS = "token, uses_allowed, pending, completed, expiry_time"


class AdminRegistrationTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def list_tokens(self) -> list[RegistrationToken]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY token")
        return [RegistrationToken(**dict(r)) for r in rows]

    async def get_token(self, token: str) -> RegistrationToken | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = $1", token)
        return RegistrationToken(**dict(row)) if row else None

    async def update_token(self, token: str, changes: dict[str, int | None]) -> RegistrationToken | None:
        """Set uses_allowed and/or expiry_time (None lifts the limit); None if there is no such token."""
        allowed = {"uses_allowed", "expiry_time"}
        assert set(changes) <= allowed
        sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
        if not sets:
            return await self.get_token(token)
        row = await self.db.fetchrow(
            f"UPDATE registration_tokens SET {sets} WHERE token = $1 RETURNING {_COLUMNS}",
            token, *changes.values(),
        )
        return RegistrationToken(**dict(row)) if row else None

    async def delete_token(self, token: str) -> bool:
        status = await self.db.execute("DELETE FROM registration_tokens WHERE token = $1", token)
        return status == "DELETE 1"
