"""End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing
keys and signatures, and the device list stream."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from homeserver.storage.db import Database

JsonDict = dict[str, Any]


class E2eKeyStore:
    def __init__(self, db: Database):
        self.db = db

    # Device keys

    async def get_device_keys(self, user_id: str, device_id: str) -> JsonDict | None:
        raw = await self.db.fetchval(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2", user_id, device_id
        )
        return json.loads(raw) if raw is not None else None

    async def set_device_keys(self, user_id: str, device_id: str, keys: JsonDict, position: int) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)"
                " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json",
                user_id, device_id, json.dumps(keys),
            )
            await self._mark_changed(conn, [user_id], position)

    async def query_devices(self, user_id: str, device_ids: list[str] | None) -> list[tuple[str, str | None, JsonDict]]:
        """(device id, display name, keys) of a user's devices that have keys; all when device_ids is None."""
        rows = await self.db.fetch(
            "SELECT k.device_id, d.display_name, k.key_json FROM e2e_device_keys k"
            " JOIN devices d USING (user_id, device_id)"
            " WHERE k.user_id = $1 AND ($2::text[] IS NULL OR k.device_id = ANY($2::text[]))",
            user_id, device_ids,
        )
        return [(r["device_id"], r["display_name"], json.loads(r["key_json"])) for r in rows]

    # One-time and fallback keys

    async def add_one_time_keys(self, user_id: str, device_id: str, keys: list[tuple[str, str, JsonDict | str]]) -> None:
        """Store (algorithm, key id, key) triples; a key id already stored keeps its first key."""
        if not keys:
            return
        await self.db.execute(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
            " SELECT $1, $2, a, k, j FROM unnest($3::text[], $4::text[], $5::text[]) AS t(a, k, j)"
            " ON CONFLICT DO NOTHING",
            user_id, device_id, [a for a, _, _ in keys], [k for _, k, _ in keys],
            [json.dumps(v) for _, _, v in keys],
        )

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        rows = await self.db.fetch(
            "SELECT algorithm, count(*) AS n FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
            user_id, device_id,
        )
        return {r["algorithm"]: r["n"] for r in rows}

    async def set_fallback_keys(self, user_id: str, device_id: str, keys: list[tuple[str, str, JsonDict | str]]) -> None:
        """Replace the device's fallback key of each algorithm (unused again unless it is the same key)."""
        async with self.db.transaction() as conn:
            for algorithm, key_id, key in keys:
                await conn.execute(
                    "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE"
                    " SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json,"
                    " used = e2e_fallback_keys.used AND e2e_fallback_keys.key_json = EXCLUDED.key_json",
                    user_id, device_id, algorithm, key_id, json.dumps(key),
                )

    async def claim_key(self, user_id: str, device_id: str, algorithm: str) -> tuple[str, JsonDict | str] | None:
        """Take one one-time key (deleted as it is handed out), else the fallback key (marked used)."""
        async with self.db.transaction() as conn:
            # SKIP LOCKED: concurrent claims each get a different key, never the same one twice.
            row = await conn.fetchrow(
                "DELETE FROM e2e_one_time_keys WHERE ctid = ("
                " SELECT ctid FROM e2e_one_time_keys"
                " WHERE user_id = $1 AND device_id = $2 AND algorithm = $3"
                " ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING key_id, key_json",
                user_id, device_id, algorithm,
            )
            if row is None:
                row = await conn.fetchrow(
                    "UPDATE e2e_fallback_keys SET used = true"
                    " WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json",
                    user_id, device_id, algorithm,
                )
        return (row["key_id"], json.loads(row["key_json"])) if row else None

    # Cross-signing keys and signatures

    async def get_cross_signing_keys(self, user_id: str) -> dict[str, JsonDict]:
        rows = await self.db.fetch(
            "SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = $1", user_id
        )
        return {r["key_type"]: json.loads(r["key_json"]) for r in rows}

    async def set_cross_signing_keys(self, user_id: str, keys: dict[str, JsonDict], position: int) -> None:
        async with self.db.transaction() as conn:
            for key_type, key in keys.items():
                await conn.execute(
                    "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)"
                    " ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = EXCLUDED.key_json",
                    user_id, key_type, json.dumps(key),
                )
            await self._mark_changed(conn, [user_id], position)

    async def add_signatures(
        self, signer: str, signatures: list[tuple[str, str, str, str]], position: int,
    ) -> None:
        """Store (signer key id, target user, target key id, signature) and mark the targets changed."""
        async with self.db.transaction() as conn:
            for signer_key_id, target_user, target_key_id, signature in signatures:
                await conn.execute(
                    "INSERT INTO e2e_signatures"
                    " (signer_user_id, signer_key_id, target_user_id, target_key_id, signature)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (signer_user_id, signer_key_id, target_user_id,"
                    " target_key_id) DO UPDATE SET signature = EXCLUDED.signature",
                    signer, signer_key_id, target_user, target_key_id, signature,
                )
            await self._mark_changed(conn, sorted({s[1] for s in signatures}), position)

    async def signatures_for(
        self, target_user: str, target_key_ids: Iterable[str], signers: Iterable[str],
    ) -> list[tuple[str, str, str, str]]:
        """(target key id, signer, signer key id, signature) on a user's keys, by the given signers."""
        rows = await self.db.fetch(
            "SELECT target_key_id, signer_user_id, signer_key_id, signature FROM e2e_signatures"
            " WHERE target_user_id = $1 AND target_key_id = ANY($2::text[]) AND signer_user_id = ANY($3::text[])",
            target_user, list(target_key_ids), list(signers),
        )
        return [(r["target_key_id"], r["signer_user_id"], r["signer_key_id"], r["signature"]) for r in rows]

    # The device list stream

    async def mark_changed(self, user_ids: list[str], position: int) -> None:
        async with self.db.transaction() as conn:
            await self._mark_changed(conn, user_ids, position)

    @staticmethod
    async def _mark_changed(conn: Any, user_ids: list[str], position: int) -> None:
        await conn.execute(
            "INSERT INTO device_lists_stream (stream_id, user_id) SELECT $1, u FROM unnest($2::text[]) AS u"
            " ON CONFLICT DO NOTHING",
            position, user_ids,
        )

    async def last_change_before(self, user_id: str, position: int) -> int | None:
        return await self.db.fetchval(
            "SELECT max(stream_id) FROM device_lists_stream WHERE user_id = $1 AND stream_id < $2",
            user_id, position,
        )

    async def changed_users(self, after: int, up_to: int, among: Iterable[str]) -> set[str]:
        """Which of ``among`` changed their devices or keys in the window."""
        rows = await self.db.fetch(
            "SELECT DISTINCT user_id FROM device_lists_stream"
            " WHERE stream_id > $1 AND stream_id <= $2 AND user_id = ANY($3::text[])",
            after, up_to, list(among),
        )
        return {r["user_id"] for r in rows}

    # Who shares rooms with whom (for device list changes)

    async def users_sharing_rooms(self, user_id: str) -> set[str]:
        """Every user joined to a room the user is joined to, the user included."""
        rows = await self.db.fetch(
            "SELECT DISTINCT o.state_key AS user_id FROM current_state m"
            " JOIN current_state o ON o.room_id = m.room_id AND o.type = 'm.room.member' AND o.membership = 'join'"
            " WHERE m.type = 'm.room.member' AND m.state_key = $1 AND m.membership = 'join'",
            user_id,
        )
        return {r["user_id"] for r in rows} | {user_id}

    async def member_changes_in_rooms(self, room_ids: list[str], after: int, up_to: int) -> set[tuple[str, str]]:
        """(room id, user id) of membership events in the rooms in a stream window."""
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id, state_key FROM events"
            " WHERE type = 'm.room.member' AND room_id = ANY($1::text[])"
            " AND stream_ordering > $2 AND stream_ordering <= $3 AND NOT outlier AND rejected_reason IS NULL",
            room_ids, after, up_to,
        )
        return {(r["room_id"], r["state_key"]) for r in rows}

    async def joined_members(self, room_ids: list[str]) -> set[str]:
        rows = await self.db.fetch(
            "SELECT DISTINCT state_key FROM current_state"
            " WHERE room_id = ANY($1::text[]) AND type = 'm.room.member' AND membership = 'join'",
            room_ids,
        )
        return {r["state_key"] for r in rows}
