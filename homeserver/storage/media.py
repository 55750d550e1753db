"""Media metadata: local uploads, the remote media cache and thumbnails.

The bytes live in the content store on disk, named by SHA-256; the rows here
are their only references. Adding or dropping a reference to a hash happens
under a transaction-scoped advisory lock on that hash (`content_lock`), so the
file cannot be deleted between "the file is there" and "a row names it".
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import AsyncIterator

import asyncpg

from homeserver.storage.db import Database

LOCAL = ""  # the origin of thumbnails of our own media

_REFERENCES = (
    "SELECT (SELECT count(*) FROM media WHERE sha256 = $1)"
    " + (SELECT count(*) FROM remote_media WHERE sha256 = $1)"
    " + (SELECT count(*) FROM media_thumbnails WHERE sha256 = $1)"
)


@dataclasses.dataclass(frozen=True)
class LocalMedia:
    media_id: str
    user_id: str
    created_ts: int
    sha256: str | None
    size: int | None
    content_type: str | None
    upload_name: str | None
    uploaded_ts: int | None
    unused_expires_ts: int | None
    last_access_ts: int | None
    quarantined_by: str | None

    @property
    def uploaded(self) -> bool:
        return self.sha256 is not None


@dataclasses.dataclass(frozen=True)
class RemoteMedia:
    origin: str
    media_id: str
    sha256: str
    size: int
    content_type: str
    upload_name: str | None
    fetched_ts: int
    last_access_ts: int | None
    quarantined_by: str | None


@dataclasses.dataclass(frozen=True)
class Thumbnail:
    width: int
    height: int
    method: str
    content_type: str
    animated: bool
    sha256: str
    size: int


@dataclasses.dataclass(frozen=True)
class Content:
    """What an upload or a fetch stored: its hash, size, type and name."""

    sha256: str
    size: int
    content_type: str
    upload_name: str | None


def _quarantine_of(param: int) -> str:
    """SQL for who quarantined content with the hash in $param, if anyone: the same bytes
    uploaded or fetched again stay quarantined (as Synapse since 1.128)."""
    return (
        f"(SELECT quarantined_by FROM media WHERE sha256 = ${param} AND quarantined_by IS NOT NULL"
        f" UNION ALL SELECT quarantined_by FROM remote_media WHERE sha256 = ${param}"
        " AND quarantined_by IS NOT NULL LIMIT 1)"
    )


def _lock_key(sha256: str) -> int:
    # The first 8 bytes of the hash as a signed 64-bit advisory lock key.
    return int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)


class ContentTransaction:
    """Reference changes for one hash, inside the transaction that holds its lock."""

    def __init__(self, conn: asyncpg.Connection, sha256: str):
        self.conn = conn
        self.sha256 = sha256

    async def references(self) -> int:
        return await self.conn.fetchval(_REFERENCES, self.sha256)

    async def insert_local(self, media_id: str, user_id: str, content: Content, now: int) -> None:
        await self.conn.execute(
            "INSERT INTO media (media_id, user_id, created_ts, sha256, size, content_type,"
            " upload_name, uploaded_ts, quarantined_by)"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7, $3, {_quarantine_of(4)})",
            media_id, user_id, now, content.sha256, content.size, content.content_type,
            content.upload_name,
        )

    async def complete_pending(self, media_id: str, user_id: str, content: Content, now: int) -> bool:
        """Fill in an id created with /create; False when it was filled meanwhile or is gone."""
        status = await self.conn.execute(
            "UPDATE media SET sha256 = $3, size = $4, content_type = $5, upload_name = $6,"
            " uploaded_ts = $7, unused_expires_ts = NULL,"
            f" quarantined_by = COALESCE(quarantined_by, {_quarantine_of(3)})"
            " WHERE media_id = $1 AND user_id = $2 AND sha256 IS NULL AND unused_expires_ts > $7",
            media_id, user_id, content.sha256, content.size, content.content_type,
            content.upload_name, now,
        )
        return status == "UPDATE 1"

    async def insert_remote(self, origin: str, media_id: str, content: Content, now: int) -> None:
        await self.conn.execute(
            "INSERT INTO remote_media (origin, media_id, sha256, size, content_type, upload_name,"
            f" fetched_ts, quarantined_by) VALUES ($1, $2, $3, $4, $5, $6, $7, {_quarantine_of(3)})"
            " ON CONFLICT (origin, media_id) DO UPDATE SET sha256 = EXCLUDED.sha256,"
            " size = EXCLUDED.size, content_type = EXCLUDED.content_type,"
            " upload_name = EXCLUDED.upload_name, fetched_ts = EXCLUDED.fetched_ts",
            origin, media_id, content.sha256, content.size, content.content_type,
            content.upload_name, now,
        )

    async def insert_thumbnail(self, origin: str, media_id: str, thumbnail: Thumbnail, now: int) -> bool:
        """Record a thumbnail of media that still exists; False when it is gone or the
        same thumbnail was recorded meanwhile.

        FOR KEY SHARE makes a concurrent delete of the media wait for this
        transaction (and then delete this row too), or this insert wait for the
        delete (and then find nothing): no thumbnail outlives its media.
        """
        parent = (
            "SELECT 1 FROM media WHERE media_id = $2 AND sha256 IS NOT NULL FOR KEY SHARE"
            if origin == LOCAL
            else "SELECT 1 FROM remote_media WHERE origin = $1 AND media_id = $2 FOR KEY SHARE"
        )
        status = await self.conn.execute(
            "INSERT INTO media_thumbnails (origin, media_id, width, height, method, content_type,"
            " animated, sha256, size, created_ts)"
            f" SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS ({parent})"
            " ON CONFLICT DO NOTHING",
            origin, media_id, thumbnail.width, thumbnail.height, thumbnail.method,
            thumbnail.content_type, thumbnail.animated, thumbnail.sha256, thumbnail.size, now,
        )
        return status == "INSERT 0 1"


class MediaStore:
    def __init__(self, db: Database):
        self.db = db

    @contextlib.asynccontextmanager
    async def content_lock(self, sha256: str) -> AsyncIterator[ContentTransaction]:
        """A transaction holding the advisory lock of one content hash until it ends."""
        async with self.db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(sha256))
            yield ContentTransaction(conn, sha256)

    # Local media.

    async def create_pending(self, media_id: str, user_id: str, now: int, expires_ts: int) -> None:
        await self.db.execute(
            "INSERT INTO media (media_id, user_id, created_ts, unused_expires_ts) VALUES ($1, $2, $3, $4)",
            media_id, user_id, now, expires_ts,
        )

    async def count_pending(self, user_id: str, now: int) -> int:
        return await self.db.fetchval(
            "SELECT count(*) FROM media WHERE user_id = $1 AND sha256 IS NULL AND unused_expires_ts > $2",
            user_id, now,
        )

    async def delete_expired_pending(self, now: int) -> int:
        """Forget ids created with /create whose upload never came in time."""
        status = await self.db.execute(
            "DELETE FROM media WHERE sha256 IS NULL AND unused_expires_ts <= $1", now
        )
        return int(status.split()[-1])

    async def get_local(self, media_id: str) -> LocalMedia | None:
        row = await self.db.fetchrow("SELECT * FROM media WHERE media_id = $1", media_id)
        return LocalMedia(**dict(row)) if row is not None else None

    async def touch_local(self, media_id: str, now: int, granularity_ms: int = 3_600_000) -> None:
        # Written at most once per granularity, so that downloads are not all writes.
        await self.db.execute(
            "UPDATE media SET last_access_ts = $2 WHERE media_id = $1"
            " AND (last_access_ts IS NULL OR last_access_ts < $2::bigint - $3::bigint)",
            media_id, now, granularity_ms,
        )

    async def delete_local(self, media_id: str) -> list[str] | None:
        """Delete a local media item and its thumbnails; return the hashes they referenced
        (None when there was no such media)."""
        async with self.db.transaction() as conn:
            # The media row first: this waits for thumbnails being recorded (see
            # insert_thumbnail), so the next statement sees and deletes them.
            deleted = await conn.fetchrow("DELETE FROM media WHERE media_id = $1 RETURNING sha256", media_id)
            if deleted is None:
                return None
            hashes = await conn.fetch(
                "DELETE FROM media_thumbnails WHERE origin = $1 AND media_id = $2 RETURNING sha256",
                LOCAL, media_id,
            )
        return [row["sha256"] for row in hashes] + ([deleted["sha256"]] if deleted["sha256"] else [])

    # Remote media cache.

    async def get_remote(self, origin: str, media_id: str) -> RemoteMedia | None:
        row = await self.db.fetchrow(
            "SELECT * FROM remote_media WHERE origin = $1 AND media_id = $2", origin, media_id
        )
        return RemoteMedia(**dict(row)) if row is not None else None

    async def touch_remote(self, origin: str, media_id: str, now: int, granularity_ms: int = 3_600_000) -> None:
        await self.db.execute(
            "UPDATE remote_media SET last_access_ts = $3 WHERE origin = $1 AND media_id = $2"
            " AND (last_access_ts IS NULL OR last_access_ts < $3::bigint - $4::bigint)",
            origin, media_id, now, granularity_ms,
        )

    async def purge_remote(self, accessed_before_ts: int) -> tuple[int, list[str]]:
        """Drop cached remote media not used since the time (or fetched before it, if never
        used), with their thumbnails; return how many items and the hashes they referenced."""
        async with self.db.transaction() as conn:
            purged = await conn.fetch(
                "DELETE FROM remote_media WHERE COALESCE(last_access_ts, fetched_ts) < $1"
                " RETURNING origin, media_id, sha256",
                accessed_before_ts,
            )
            hashes = [row["sha256"] for row in purged]
            if purged:
                thumbs = await conn.fetch(
                    "DELETE FROM media_thumbnails t USING unnest($1::text[], $2::text[]) AS p(origin, media_id)"
                    " WHERE t.origin = p.origin AND t.media_id = p.media_id RETURNING t.sha256",
                    [row["origin"] for row in purged], [row["media_id"] for row in purged],
                )
                hashes += [row["sha256"] for row in thumbs]
        return len(purged), hashes

    # Thumbnails.

    async def thumbnails(self, origin: str, media_id: str) -> list[Thumbnail]:
        rows = await self.db.fetch(
            "SELECT width, height, method, content_type, animated, sha256, size"
            " FROM media_thumbnails WHERE origin = $1 AND media_id = $2",
            origin, media_id,
        )
        return [Thumbnail(**dict(row)) for row in rows]

    # Disk usage.

    async def content_exists(self, sha256: str) -> bool:
        return bool(await self.db.fetchval(_REFERENCES, sha256))

    async def bytes_stored(self) -> int:
        """Bytes of distinct content on disk: uploads, cached remote media and thumbnails."""
        return await self.db.fetchval(
            "SELECT COALESCE(sum(size), 0)::bigint FROM ("
            " SELECT sha256, size FROM media WHERE sha256 IS NOT NULL"
            " UNION SELECT sha256, size FROM remote_media"
            " UNION SELECT sha256, size FROM media_thumbnails) AS content"
        )
