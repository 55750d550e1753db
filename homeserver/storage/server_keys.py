"""Key responses of other servers, one row per (server, key id) they give."""

from __future__ import annotations

import dataclasses
from typing import Iterable

from homeserver.storage.db import Database

_COLUMNS = "server_name, key_id, key_json, valid_until_ts, fetched_ts"


@dataclasses.dataclass(frozen=True)
class StoredKeyResponse:
    server_name: str
    key_id: str
    # The response as signed, canonical JSON.
    key_json: str
    valid_until_ts: int
    fetched_ts: int


class ServerKeyStore:
    def __init__(self, db: Database):
        self.db = db

    async def store_response(
        self, server_name: str, key_ids: Iterable[str], key_json: str, valid_until_ts: int, fetched_ts: int
    ) -> None:
        """Record one response for each key id it gives, unless a stored response for
        that key is valid longer (then the stored one is the newer truth)."""
        key_ids = sorted(set(key_ids))
        if not key_ids:
            return
        await self.db.execute(
            f"INSERT INTO server_keys_json ({_COLUMNS})"
            " SELECT $1, key_id, $3, $4, $5 FROM unnest($2::text[]) AS key_id"
            " ON CONFLICT (server_name, key_id) DO UPDATE SET key_json = EXCLUDED.key_json,"
            " valid_until_ts = EXCLUDED.valid_until_ts, fetched_ts = EXCLUDED.fetched_ts"
            " WHERE EXCLUDED.valid_until_ts >= server_keys_json.valid_until_ts",
            server_name, key_ids, key_json, valid_until_ts, fetched_ts,
        )

    async def get_responses(
        self, server_name: str, key_ids: Iterable[str] | None = None
    ) -> list[StoredKeyResponse]:
        """The stored rows of ``server_name``: of the given key ids, or all of them."""
        if key_ids is None:
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM server_keys_json WHERE server_name = $1 ORDER BY key_id",
                server_name,
            )
        else:
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM server_keys_json WHERE server_name = $1 AND key_id = ANY($2::text[])"
                " ORDER BY key_id",
                server_name, sorted(set(key_ids)),
            )
        return [StoredKeyResponse(**dict(r)) for r in rows]
