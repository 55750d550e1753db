"""Cached device lists of other servers' users (migration 0013)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from homeserver.storage.db import Database

JsonDict = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RemoteDevice:
    device_id: str
    display_name: str | None
    keys: JsonDict | None


@dataclasses.dataclass(frozen=True)
class RemoteDeviceList:
    user_id: str
    stream_id: int | None
    stale: bool
    devices: dict[str, RemoteDevice]
    master_key: JsonDict | None
    self_signing_key: JsonDict | None


def _loads(raw: str | None) -> Any:
    return json.loads(raw) if raw is not None else None


def _dumps(value: Any) -> str | None:
    return json.dumps(value) if value is not None else None


class RemoteDeviceStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, RemoteDeviceList]:
        user_ids = list(user_ids)
        lists = await self.db.fetch(
            "SELECT user_id, stream_id, stale, master_key, self_signing_key FROM remote_device_lists"
            " WHERE user_id = ANY($1::text[])",
            user_ids,
        )
        devices = await self.db.fetch(
            "SELECT user_id, device_id, display_name, key_json FROM remote_devices"
            " WHERE user_id = ANY($1::text[]) ORDER BY user_id, device_id",
            user_ids,
        )
        by_user: dict[str, dict[str, RemoteDevice]] = {}
        for r in devices:
            by_user.setdefault(r["user_id"], {})[r["device_id"]] = RemoteDevice(
                r["device_id"], r["display_name"], _loads(r["key_json"]))
        return {
            r["user_id"]: RemoteDeviceList(
                r["user_id"], r["stream_id"], r["stale"], by_user.get(r["user_id"], {}),
                _loads(r["master_key"]), _loads(r["self_signing_key"]))
            for r in lists
        }

    async def get(self, user_id: str) -> RemoteDeviceList | None:
        return (await self.get_many([user_id])).get(user_id)

    async def replace(
        self, user_id: str, stream_id: int | None, devices: list[RemoteDevice],
        master_key: JsonDict | None, self_signing_key: JsonDict | None,
    ) -> None:
        """The whole list as the user's server gave it (a resync): no longer stale."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO remote_device_lists (user_id, stream_id, stale, master_key, self_signing_key)"
                " VALUES ($1, $2, false, $3, $4) ON CONFLICT (user_id) DO UPDATE SET"
                " stream_id = EXCLUDED.stream_id, stale = false, master_key = EXCLUDED.master_key,"
                " self_signing_key = EXCLUDED.self_signing_key",
                user_id, stream_id, _dumps(master_key), _dumps(self_signing_key),
            )
            await conn.execute("DELETE FROM remote_devices WHERE user_id = $1", user_id)
            await conn.executemany(
                "INSERT INTO remote_devices (user_id, device_id, display_name, key_json) VALUES ($1, $2, $3, $4)",
                [(user_id, d.device_id, d.display_name, _dumps(d.keys)) for d in devices],
            )

    async def apply_update(
        self, user_id: str, stream_id: int, device_id: str, deleted: bool,
        keys: JsonDict | None, display_name: str | None,
    ) -> None:
        """One m.device_list_update on a list already held."""
        async with self.db.transaction() as conn:
            if deleted:
                await conn.execute(
                    "DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2", user_id, device_id)
            else:
                # An update without keys keeps the keys already known (a rename, say).
                await conn.execute(
                    "INSERT INTO remote_devices (user_id, device_id, display_name, key_json)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO UPDATE SET"
                    " display_name = EXCLUDED.display_name,"
                    " key_json = COALESCE(EXCLUDED.key_json, remote_devices.key_json)",
                    user_id, device_id, display_name, _dumps(keys),
                )
            await conn.execute(
                "UPDATE remote_device_lists SET stream_id = GREATEST(stream_id, $2) WHERE user_id = $1",
                user_id, stream_id,
            )

    async def set_cross_signing(self, user_id: str, master_key: JsonDict | None,
                                self_signing_key: JsonDict | None) -> None:
        """An m.signing_key_update: the keys it carries replace the held ones."""
        await self.db.execute(
            "UPDATE remote_device_lists SET master_key = COALESCE($2, master_key),"
            " self_signing_key = COALESCE($3, self_signing_key) WHERE user_id = $1",
            user_id, _dumps(master_key), _dumps(self_signing_key),
        )

    async def mark_stale(self, user_ids: Iterable[str]) -> None:
        await self.db.execute(
            "INSERT INTO remote_device_lists (user_id, stale) SELECT u, true FROM unnest($1::text[]) AS u"
            " ON CONFLICT (user_id) DO UPDATE SET stale = true",
            list(user_ids),
        )

    async def stale_users(self) -> list[str]:
        rows = await self.db.fetch("SELECT user_id FROM remote_device_lists WHERE stale ORDER BY user_id")
        return [r["user_id"] for r in rows]

    async def forget(self, user_ids: Iterable[str]) -> None:
        await self.db.execute("DELETE FROM remote_device_lists WHERE user_id = ANY($1::text[])", list(user_ids))

    async def shares_room_with_local(self, user_id: str, server_name: str) -> bool:
        """Is the user joined to a room where one of our users is joined too?"""
        return await self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM current_state m JOIN current_state o"
            " ON o.room_id = m.room_id AND o.type = 'm.room.member' AND o.membership = 'join'"
            " AND right(o.state_key, length($2) + 1) = ':' || $2"
            " WHERE m.type = 'm.room.member' AND m.state_key = $1 AND m.membership = 'join')",
            user_id, server_name,
        )
