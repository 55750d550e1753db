"""Registration tokens and user-interactive authentication sessions."""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.db import Database


class RegistrationStore:
    def __init__(self, db: Database):
        self.db = db

    # Registration tokens (spec: m.login.registration_token)

    async def create_token(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        status = await self.db.execute(
            "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            token, uses_allowed, expiry_time,
        )
        return status == "INSERT 0 1"

    async def token_is_usable(self, token: str, now: int) -> bool:
        row = await self.db.fetchrow(
            "SELECT uses_allowed, pending, completed, expiry_time FROM registration_tokens WHERE token = $1",
            token,
        )
        if row is None:
            return False
        if row["expiry_time"] is not None and row["expiry_time"] < now:
            return False
        if row["uses_allowed"] is not None and row["pending"] + row["completed"] >= row["uses_allowed"]:
            return False
        return True

    async def reserve_token(self, token: str) -> None:
        await self.db.execute("UPDATE registration_tokens SET pending = pending + 1 WHERE token = $1", token)

    async def complete_token(self, token: str) -> None:
        await self.db.execute(
            "UPDATE registration_tokens SET pending = greatest(pending - 1, 0), completed = completed + 1"
            " WHERE token = $1",
            token,
        )

    # UI auth sessions

    async def create_session(self, session_id: str, purpose: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO ui_auth_sessions (session_id, created_ts, purpose) VALUES ($1, $2, $3)",
            session_id, now, purpose,
        )

    async def get_session(self, session_id: str) -> tuple[str, list[str], dict[str, Any], int] | None:
        """(purpose, completed stages, results, created_ts) of a session."""
        row = await self.db.fetchrow(
            "SELECT purpose, completed_stages, results, created_ts FROM ui_auth_sessions WHERE session_id = $1",
            session_id,
        )
        if row is None:
            return None
        return row["purpose"], json.loads(row["completed_stages"]), json.loads(row["results"]), row["created_ts"]

    async def complete_stage(self, session_id: str, stage: str, results: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE ui_auth_sessions SET"
            " completed_stages = CASE WHEN completed_stages ? $2 THEN completed_stages"
            "   ELSE completed_stages || to_jsonb($2::text) END,"
            " results = results || $3::jsonb"
            " WHERE session_id = $1",
            session_id, stage, json.dumps(results),
        )

    async def delete_session(self, session_id: str) -> None:
        await self.db.execute("DELETE FROM ui_auth_sessions WHERE session_id = $1", session_id)

    async def delete_sessions_older_than(self, ts: int) -> None:
        await self.db.execute("DELETE FROM ui_auth_sessions WHERE created_ts < $1", ts)
