"""One user's data across the tables: what `export-data` reads and `erase-user` removes.

Each read pages or returns a bounded list; nothing here loads a room's whole history.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class UploadedMedia:
    media_id: str
    created_ts: int
    sha256: str
    size: int
    content_type: str | None
    upload_name: str | None


@dataclasses.dataclass(frozen=True)
class AccountRecord:
    """The account row without its password hash."""

    user_id: str
    is_admin: bool
    deactivated: bool
    created_ts: int


# Tables of private per-user data that erasure empties (devices, their keys and tokens go
# through AccountService.delete_devices, which tells other servers of it). Tables whose
# rows carry a stream position (account_data, receipts, presence) are not deleted from:
# a stream's position is reloaded from its table's maximum at start, and a deleted
# maximum would hand out a position again that clients already passed.
_PRIVATE_TABLES = (
    "filters", "push_rules", "push_rule_defaults_changed", "pushers",
    "event_push_actions", "push_actions_evaluated", "e2e_room_keys", "e2e_room_key_versions",
    "access_tokens", "refresh_tokens", "login_tokens", "openid_tokens", "event_txn_ids",
)


class UserDataStore:
    def __init__(self, db: Database):
        self.db = db

    async def account(self, user_id: str) -> AccountRecord | None:
        row = await self.db.fetchrow(
            "SELECT user_id, is_admin, deactivated, created_ts FROM users WHERE user_id = $1", user_id
        )
        return AccountRecord(**dict(row)) if row is not None else None

    async def rooms_ever_in(self, user_id: str) -> list[str]:
        """Rooms with any membership event of the user (joined, left, invited...), by first appearance."""
        rows = await self.db.fetch(
            "SELECT room_id FROM events WHERE type = 'm.room.member' AND state_key = $1"
            " GROUP BY room_id ORDER BY min(stream_ordering)",
            user_id,
        )
        return [r["room_id"] for r in rows]

    async def account_data(self, user_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(room id or "" for global, type, content) of every account data item."""
        rows = await self.db.fetch(
            "SELECT room_id, type, content FROM account_data WHERE user_id = $1 ORDER BY room_id, type",
            user_id,
        )
        return [(r["room_id"], r["type"], json.loads(r["content"])) for r in rows]

    async def uploaded_media(self, user_id: str) -> list[UploadedMedia]:
        """Local media the user uploaded (ids created but never uploaded are left out)."""
        rows = await self.db.fetch(
            "SELECT media_id, created_ts, sha256, size, content_type, upload_name FROM media"
            " WHERE user_id = $1 AND sha256 IS NOT NULL ORDER BY created_ts, media_id",
            user_id,
        )
        return [UploadedMedia(**dict(r)) for r in rows]

    async def media_ids_of(self, user_id: str) -> list[str]:
        """Every local media id the user created, uploaded or not."""
        rows = await self.db.fetch("SELECT media_id FROM media WHERE user_id = $1 ORDER BY media_id", user_id)
        return [r["media_id"] for r in rows]

    async def unredacted_messages(self, room_id: str, sender: str, after: int, limit: int) -> list[tuple[str, int]]:
        """(event id, stream ordering) of the sender's accepted messages and earlier member
        events in the room, after a position, not yet redacted and not redactions: one page."""
        rows = await self.db.fetch(
            "SELECT e.event_id, e.stream_ordering FROM events e"
            " WHERE e.room_id = $1 AND e.sender = $2 AND e.stream_ordering > $3"
            # Messages, and their past member events (which name their old display name).
            " AND (e.state_key IS NULL OR (e.type = 'm.room.member' AND e.state_key = $2"
            "      AND NOT EXISTS (SELECT 1 FROM current_state c WHERE c.room_id = e.room_id"
            "      AND c.type = 'm.room.member' AND c.state_key = $2 AND c.event_id = e.event_id)))"
            " AND e.type <> 'm.room.redaction'"
            " AND NOT e.outlier AND e.rejected_reason IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM redactions red JOIN events r ON r.event_id = red.event_id"
            "                 WHERE red.redacts = e.event_id AND r.room_id = e.room_id)"
            " ORDER BY e.stream_ordering LIMIT $4",
            room_id, sender, after, limit,
        )
        return [(r["event_id"], r["stream_ordering"]) for r in rows]

    async def mark_erasure_started(self, user_id: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO erased_users (user_id, started_ts) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
            user_id, now,
        )

    async def mark_erasure_completed(self, user_id: str, now: int) -> None:
        await self.db.execute("UPDATE erased_users SET completed_ts = $2 WHERE user_id = $1", user_id, now)

    async def is_erased(self, user_id: str) -> bool:
        """Whether an erasure of the user was begun (finished or not)."""
        return bool(await self.db.fetchval("SELECT EXISTS (SELECT 1 FROM erased_users WHERE user_id = $1)", user_id))

    async def delete_private_data(self, user_id: str) -> None:
        """Filters, push rules and pushers, key backups, cross-signing keys, tokens, the
        content of account data and the profile's fields, in one transaction (run again:
        nothing left)."""
        async with self.db.transaction() as conn:
            for table in _PRIVATE_TABLES:
                await conn.execute(f"DELETE FROM {table} WHERE user_id = $1", user_id)
            await conn.execute("UPDATE account_data SET content = '{}' WHERE user_id = $1", user_id)
            # Cross-signing keys are the user's, not a device's: they do not go with the devices.
            await conn.execute("DELETE FROM e2e_cross_signing_keys WHERE user_id = $1", user_id)
            await conn.execute(
                "DELETE FROM e2e_signatures WHERE signer_user_id = $1 OR target_user_id = $1", user_id
            )
            await conn.execute(
                "UPDATE profiles SET displayname = NULL, avatar_url = NULL, extra = '{}' WHERE user_id = $1",
                user_id,
            )
