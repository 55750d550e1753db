"""Server-side key backups: versions and the (client-encrypted) room keys in them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from homeserver.storage.db import Database

JsonDict = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: JsonDict
    etag: int
    count: int


@dataclasses.dataclass(frozen=True)
class RoomKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: JsonDict

    def to_json(self) -> JsonDict:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }


class KeyBackupStore:
    def __init__(self, db: Database):
        self.db = db

    async def create_version(self, user_id: str, algorithm: str, auth_data: JsonDict) -> int:
        async with self.db.transaction() as conn:
            # One creation per user at a time, so that two never pick the same number.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('room_keys:' || $1))", user_id)
            return await conn.fetchval(
                "INSERT INTO e2e_room_key_versions (user_id, version, algorithm, auth_data)"
                " SELECT $1, COALESCE(max(version), 0) + 1, $2, $3 FROM e2e_room_key_versions WHERE user_id = $1"
                " RETURNING version",
                user_id, algorithm, json.dumps(auth_data),
            )

    async def get_version(self, user_id: str, version: int | None) -> BackupVersion | None:
        """A live version, or the newest one when ``version`` is None."""
        row = await self.db.fetchrow(
            "SELECT v.version, v.algorithm, v.auth_data, v.etag,"
            " (SELECT count(*) FROM e2e_room_keys k WHERE k.user_id = v.user_id AND k.version = v.version) AS count"
            " FROM e2e_room_key_versions v"
            " WHERE v.user_id = $1 AND NOT v.deleted AND ($2::bigint IS NULL OR v.version = $2)"
            " ORDER BY v.version DESC LIMIT 1",
            user_id, version,
        )
        if row is None:
            return None
        return BackupVersion(row["version"], row["algorithm"], json.loads(row["auth_data"]), row["etag"], row["count"])

    async def update_auth_data(self, user_id: str, version: int, auth_data: JsonDict) -> None:
        await self.db.execute(
            "UPDATE e2e_room_key_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2",
            user_id, version, json.dumps(auth_data),
        )

    async def delete_version(self, user_id: str, version: int) -> bool:
        async with self.db.transaction() as conn:
            status = await conn.execute(
                "UPDATE e2e_room_key_versions SET deleted = true WHERE user_id = $1 AND version = $2 AND NOT deleted",
                user_id, version,
            )
            await conn.execute("DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2", user_id, version)
        return status != "UPDATE 0"

    async def put_keys(self, user_id: str, version: int, keys: list[RoomKey]) -> None:
        """Store keys, each replacing a stored one only if it is better (spec: verified over
        unverified, then the lower first_message_index, then the lower forwarded_count)."""
        async with self.db.transaction() as conn:
            changed = 0
            for key in keys:
                status = await conn.execute(
                    "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index,"
                    " forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
                    " first_message_index = EXCLUDED.first_message_index,"
                    " forwarded_count = EXCLUDED.forwarded_count, is_verified = EXCLUDED.is_verified,"
                    " session_data = EXCLUDED.session_data"
                    " WHERE (EXCLUDED.is_verified AND NOT e2e_room_keys.is_verified)"
                    " OR (EXCLUDED.is_verified = e2e_room_keys.is_verified"
                    " AND (EXCLUDED.first_message_index, EXCLUDED.forwarded_count)"
                    " < (e2e_room_keys.first_message_index, e2e_room_keys.forwarded_count))",
                    user_id, version, key.room_id, key.session_id, key.first_message_index,
                    key.forwarded_count, key.is_verified, json.dumps(key.session_data),
                )
                changed += status != "INSERT 0 0"
            if changed:
                await self._bump_etag(conn, user_id, version)

    async def get_keys(self, user_id: str, version: int, room_id: str | None, session_id: str | None) -> list[RoomKey]:
        rows = await self.db.fetch(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"
            " FROM e2e_room_keys WHERE user_id = $1 AND version = $2"
            " AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)",
            user_id, version, room_id, session_id,
        )
        return [RoomKey(**{**dict(r), "session_data": json.loads(r["session_data"])}) for r in rows]

    async def delete_keys(self, user_id: str, version: int, room_id: str | None, session_id: str | None) -> None:
        async with self.db.transaction() as conn:
            status = await conn.execute(
                "DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2"
                " AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)",
                user_id, version, room_id, session_id,
            )
            if status != "DELETE 0":
                await self._bump_etag(conn, user_id, version)

    @staticmethod
    async def _bump_etag(conn: Any, user_id: str, version: int) -> None:
        await conn.execute(
            "UPDATE e2e_room_key_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2", user_id, version
        )
