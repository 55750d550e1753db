"""Pushers: where each user's devices want push notifications sent."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class Pusher:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]


class PusherStore:
    def __init__(self, db: Database):
        self.db = db

    async def of_user(self, user_id: str) -> list[Pusher]:
        rows = await self.db.fetch(
            "SELECT user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data"
            " FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey",
            user_id,
        )
        return [Pusher(**{**dict(r), "data": json.loads(r["data"])}) for r in rows]

    async def put(self, pusher: Pusher, now: int, keep_other_users: bool) -> None:
        """Create or replace a pusher; unless ``keep_other_users``, the same app id and
        pushkey of other users are removed (the device now belongs to this user)."""
        async with self.db.transaction() as conn:
            if not keep_other_users:
                await conn.execute(
                    "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
                    pusher.app_id, pusher.pushkey, pusher.user_id,
                )
            await conn.execute(
                "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name,"
                " profile_tag, lang, data, created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = EXCLUDED.kind,"
                " app_display_name = EXCLUDED.app_display_name, device_display_name = EXCLUDED.device_display_name,"
                " profile_tag = EXCLUDED.profile_tag, lang = EXCLUDED.lang, data = EXCLUDED.data",
                pusher.user_id, pusher.app_id, pusher.pushkey, pusher.kind, pusher.app_display_name,
                pusher.device_display_name, pusher.profile_tag, pusher.lang, json.dumps(pusher.data), now,
            )

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> None:
        await self.db.execute(
            "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3", user_id, app_id, pushkey
        )
