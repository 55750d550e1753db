"""The URL preview cache: OpenGraph results per URL and fetch time."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class CachedPreview:
    url: str
    fetched_ts: int
    expires_ts: int
    og: dict[str, Any]
    media_id: str | None


class UrlPreviewStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, url: str, ts: int) -> CachedPreview | None:
        """The preview fetched last at or before ts, else the first one after it."""
        row = await self.db.fetchrow(
            """SELECT url, fetched_ts, expires_ts, og, media_id FROM (
                   (SELECT *, 0 AS pref FROM url_previews
                     WHERE url = $1 AND fetched_ts <= $2 ORDER BY fetched_ts DESC LIMIT 1)
                   UNION ALL
                   (SELECT *, 1 AS pref FROM url_previews
                     WHERE url = $1 AND fetched_ts > $2 ORDER BY fetched_ts ASC LIMIT 1)
               ) AS candidates ORDER BY pref LIMIT 1""",
            url, ts,
        )
        if row is None:
            return None
        return CachedPreview(row["url"], row["fetched_ts"], row["expires_ts"], json.loads(row["og"]), row["media_id"])

    async def add(self, url: str, fetched_ts: int, expires_ts: int, og: dict[str, Any], media_id: str | None) -> None:
        await self.db.execute(
            """INSERT INTO url_previews (url, fetched_ts, expires_ts, og, media_id)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (url, fetched_ts) DO UPDATE
               SET expires_ts = EXCLUDED.expires_ts, og = EXCLUDED.og, media_id = EXCLUDED.media_id""",
            url, fetched_ts, expires_ts, json.dumps(og, ensure_ascii=False), media_id,
        )

    async def delete_expired(self, before_ts: int) -> list[str]:
        """Forget previews that expired before before_ts; returns the media ids they used."""
        rows = await self.db.fetch(
            "DELETE FROM url_previews WHERE expires_ts < $1 RETURNING media_id", before_ts
        )
        return [row["media_id"] for row in rows if row["media_id"] is not None]

    async def count(self, url: str) -> int:
        return await self.db.fetchval("SELECT count(*) FROM url_previews WHERE url = $1", url)
