"""The media repository: uploads into the content store, lookups for downloads.

Spec: https://spec.matrix.org/v1.19/client-server-api/#content-repository

An upload streams into a temporary file with its size counted as it arrives
(refused as soon as it passes the limit), is fsynced, and then, holding the
lock of its hash, is moved into place and recorded in one transaction. An
upload that fails at any point, a client gone mid-body included, leaves
neither file nor row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import AsyncContextManager, AsyncIterator, Protocol

from homeserver.config import Config
from homeserver.errors import MatrixError, forbidden, not_found, too_large
from homeserver.services.clock import now_ms
from homeserver.services.ratelimit import RateLimiter
# LOCAL (the origin of our own media's thumbnails) is imported from here by the route modules.
from homeserver.storage.media import LOCAL, Content, LocalMedia, MediaStore, RemoteMedia
from media.names import mxc_uri, new_media_id
from media.store import ContentStore, ContentTooLarge, Incoming
from media.thumbnailer import Source, Thumbnailer

log = logging.getLogger(__name__)

# Spec: timeout_ms defaults to 20 s; the server SHOULD cap it (60 s, as Synapse).
DEFAULT_WAIT_MS = 20_000
MAX_WAIT_MS = 60_000
# Waiters for an async upload also look at the database this often, in case
# another process stored it.
_RECHECK_SECONDS = 1.0


class UploadInterrupted(Exception):
    """The client stopped sending before the body was complete."""


class RemoteFile(Protocol):
    content_type: str
    upload_name: str | None
    chunks: AsyncIterator[bytes]


class RemoteFetcher(Protocol):
    """Gets media from the server that holds it (media.federation.FederationMediaFetcher)."""

    def open(self, origin: str, media_id: str, timeout_ms: int) -> AsyncContextManager[RemoteFile]:
        """The media's bytes, or MatrixError (404 not there, 502 unreachable or too large)."""

    async def close(self) -> None: ...


class MediaRepository:
    def __init__(
        self, config: Config, store: MediaStore, content: ContentStore,
        remote_fetcher: RemoteFetcher | None = None,
    ):
        self.config = config
        self.media_config = config.media
        self.server_name = config.server_name
        self.store = store
        self.content = content
        self.thumbnailer = Thumbnailer(config.media, store, content, self.release)
        limit = config.media.upload_rate_limit
        self.upload_limiter = RateLimiter(limit.per_second, limit.burst)
        # Set (and replaced) whenever an upload completes, to wake downloads waiting for it.
        self._upload_signal = asyncio.Event()
        # Fetches media of other servers (media.federation.FederationMediaFetcher);
        # None: only what is already cached is served.
        self.remote_fetcher = remote_fetcher
        self._remote_in_flight: dict[tuple[str, str], asyncio.Task[RemoteMedia]] = {}

    # Uploads.

    def check_upload_allowed(self, user_id: str, content_length: int | None) -> None:
        """What can be refused before the body is read: rate and declared size."""
        self.upload_limiter.check(user_id)
        self.check_size(content_length)

    def check_size(self, content_length: int | None) -> None:
        if content_length is not None and content_length > self.media_config.max_upload_bytes:
            raise too_large(f"Cannot upload files larger than {self.media_config.max_upload_bytes} bytes")

    async def upload(
        self, user_id: str, body: AsyncIterator[bytes], content_length: int | None,
        content_type: str, upload_name: str | None,
    ) -> str:
        """POST /_matrix/media/v3/upload: store the body; return its mxc:// URI."""
        self.check_upload_allowed(user_id, content_length)
        media_id = new_media_id()
        async with self._receive(body, content_length) as incoming:
            content = Content(incoming.sha256, incoming.size, content_type, upload_name)

            async def record(txn) -> bool:
                await txn.insert_local(media_id, user_id, content, now_ms())
                return True

            await self._commit(incoming, record)
        await self._uploaded(media_id, content)
        return mxc_uri(self.server_name, media_id)

    async def create(self, user_id: str) -> tuple[str, int]:
        """POST /_matrix/media/v1/create: a media id to upload to later, and its expiry."""
        self.upload_limiter.check(user_id)
        now = now_ms()
        await self.store.delete_expired_pending(now)
        if await self.store.count_pending(user_id, now) >= self.media_config.max_pending_uploads:
            # Spec: too many pending uploads is answered like a rate limit.
            raise MatrixError(
                429, "M_LIMIT_EXCEEDED", "Too many pending media uploads; upload to those first",
                retry_after_ms=60_000,
            )
        media_id = new_media_id()
        expires = now + self.media_config.unused_upload_expiry_ms
        await self.store.create_pending(media_id, user_id, now, expires)
        return mxc_uri(self.server_name, media_id), expires

    async def check_upload_to(self, user_id: str, server_name: str, media_id: str, content_length: int | None) -> None:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}, before reading the body."""
        media = await self.store.get_local(media_id) if server_name == self.server_name else None
        if media is None or (not media.uploaded and media.unused_expires_ts <= now_ms()):
            raise not_found("Unknown media id, or it expired")
        if media.user_id != user_id:
            raise forbidden("Only the user who created this media id may upload to it")
        if media.uploaded:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        self.check_upload_allowed(user_id, content_length)

    async def upload_to(
        self, user_id: str, server_name: str, media_id: str, body: AsyncIterator[bytes],
        content_length: int | None, content_type: str, upload_name: str | None,
    ) -> None:
        await self.check_upload_to(user_id, server_name, media_id, content_length)
        async with self._receive(body, content_length) as incoming:
            content = Content(incoming.sha256, incoming.size, content_type, upload_name)

            async def record(txn) -> bool:
                return await txn.complete_pending(media_id, user_id, content, now_ms())

            if not await self._commit(incoming, record):
                # Another upload to this id won the race, or the id expired meanwhile.
                media = await self.store.get_local(media_id)
                if media is not None and media.uploaded:
                    raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
                raise not_found("Unknown media id, or it expired")
        await self._uploaded(media_id, content)

    @contextlib.asynccontextmanager
    async def _receive(self, body: AsyncIterator[bytes], content_length: int | None) -> AsyncIterator[Incoming]:
        """Stream a body into a finished (hashed, fsynced) temporary file, within the limits."""
        quota = self.media_config.storage_quota_bytes
        if quota is not None and content_length is not None:
            if await self.store.bytes_stored() + content_length > quota:
                raise self._quota_exceeded()
        async with self.content.incoming(self.media_config.max_upload_bytes) as incoming:
            try:
                await incoming.write_all(body)
            except ContentTooLarge:
                raise too_large(f"Cannot upload files larger than {self.media_config.max_upload_bytes} bytes")
            except UploadInterrupted:
                raise MatrixError(400, "M_UNKNOWN", "The upload was interrupted before the body was complete")
            await incoming.finish()
            # Bytes already stored cost nothing more.
            if quota is not None and not await self.store.content_exists(incoming.sha256):
                if await self.store.bytes_stored() + incoming.size > quota:
                    raise self._quota_exceeded()
            yield incoming

    def _quota_exceeded(self) -> MatrixError:
        # The server, not this user or this file, is out of room: the spec's error for
        # a homeserver that reached a resource limit (with the admin to contact),
        # sent with the 403 the upload endpoints give for a reached quota.
        extra = {"admin_contact": self.media_config.admin_contact} if self.media_config.admin_contact else {}
        return MatrixError(
            403, "M_RESOURCE_LIMIT_EXCEEDED",
            "The media storage of this server is full; ask the server admin to make room", **extra,
        )

    async def _commit(self, incoming: Incoming, record) -> bool:
        """Move the file into place and record it, under its hash's lock."""
        sha256 = incoming.sha256
        try:
            async with self.store.content_lock(sha256) as txn:
                await self.content.commit(incoming)
                recorded = await record(txn)
                if not recorded:
                    # Nothing references the file we may just have placed: drop it now.
                    if await txn.references() == 0:
                        await self.content.delete(sha256)
                return recorded
        except BaseException:
            await asyncio.shield(self.release([sha256]))
            raise

    async def _uploaded(self, media_id: str, content: Content) -> None:
        signal, self._upload_signal = self._upload_signal, asyncio.Event()
        signal.set()
        await self.thumbnailer.make_standard(Source(LOCAL, media_id, content.sha256, content.content_type))

    # Lookups.

    async def local_media(self, media_id: str, timeout_ms: int = DEFAULT_WAIT_MS) -> LocalMedia:
        """Uploaded local media; waits up to timeout_ms for an async upload in progress."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(timeout_ms, 0), MAX_WAIT_MS) / 1000
        while True:
            signal = self._upload_signal
            media = await self.store.get_local(media_id)
            if media is None or media.quarantined_by is not None:
                raise not_found("Media not found")
            if media.uploaded:
                await self.store.touch_local(media_id, now_ms())
                return media
            if media.unused_expires_ts <= now_ms():
                raise not_found("Media not found")
            remaining = deadline - loop.time()
            if remaining <= 0:
                # Spec: 504 M_NOT_YET_UPLOADED for content not uploaded in time.
                raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), min(remaining, _RECHECK_SECONDS))

    async def remote_media(
        self, origin: str, media_id: str, fetch: bool = True, timeout_ms: int = DEFAULT_WAIT_MS,
    ) -> RemoteMedia:
        """Media of another server: from the cache, else (when fetch and a remote
        fetcher is set) fetched from its origin and cached."""
        media = await self.store.get_remote(origin, media_id)
        if media is None and fetch and self.remote_fetcher is not None:
            media = await self._fetch_remote_once(origin, media_id, timeout_ms)
        if media is None or media.quarantined_by is not None:
            raise not_found("Media not found")
        await self.store.touch_remote(origin, media_id, now_ms())
        return media

    async def _fetch_remote_once(self, origin: str, media_id: str, timeout_ms: int) -> RemoteMedia:
        """Concurrent requests for the same remote media join one fetch. The fetch runs
        in a task of its own: a client that goes away does not cancel it for the others."""
        key = (origin, media_id)
        task = self._remote_in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch_remote(origin, media_id, timeout_ms))
            self._remote_in_flight[key] = task

            def done(finished: asyncio.Task) -> None:
                del self._remote_in_flight[key]
                if not finished.cancelled():
                    finished.exception()  # retrieved: maybe nobody waits any more

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _fetch_remote(self, origin: str, media_id: str, timeout_ms: int) -> RemoteMedia:
        # Another fetch may have finished between the caller's cache read and now.
        cached = await self.store.get_remote(origin, media_id)
        if cached is not None:
            return cached
        async with self.remote_fetcher.open(origin, media_id, min(max(timeout_ms, 0), MAX_WAIT_MS)) as remote:
            try:
                return await self.store_remote(
                    origin, media_id, remote.chunks, remote.content_type, remote.upload_name
                )
            except MatrixError as e:
                if e.status == 413:
                    # Spec: remote media over our limit is answered 502 M_TOO_LARGE.
                    raise MatrixError(502, "M_TOO_LARGE", e.error)
                raise

    async def store_remote(
        self, origin: str, media_id: str, body: AsyncIterator[bytes], content_type: str, upload_name: str | None,
    ) -> RemoteMedia:
        """Cache media fetched from another server (for the federation fetcher)."""
        async with self._receive(body, None) as incoming:
            content = Content(incoming.sha256, incoming.size, content_type, upload_name)

            async def record(txn) -> bool:
                await txn.insert_remote(origin, media_id, content, now_ms())
                return True

            await self._commit(incoming, record)
        await self.thumbnailer.make_standard(Source(origin, media_id, content.sha256, content_type))
        return await self.store.get_remote(origin, media_id)

    def served_before_freeze(self, uploaded_ts: int) -> bool:
        """Whether the frozen legacy (unauthenticated) routes may serve this media."""
        cutoff = self.media_config.legacy_unauthenticated_cutoff
        if cutoff is None:
            return False
        start = datetime.datetime.combine(cutoff, datetime.time(), tzinfo=datetime.timezone.utc)
        return uploaded_ts < start.timestamp() * 1000

    # Deleting.

    async def release(self, hashes: list[str]) -> None:
        """Delete the files of hashes no row references any more."""
        for sha256 in sorted(set(hashes)):
            async with self.store.content_lock(sha256) as txn:
                if await txn.references() == 0:
                    await self.content.delete(sha256)

    async def delete_local(self, media_id: str) -> bool:
        """Delete a local media item and its thumbnails; its files go when unreferenced."""
        hashes = await self.store.delete_local(media_id)
        if hashes is None:
            return False
        await self.release(hashes)
        return True

    async def purge_remote_cache(self, accessed_before_ts: int) -> int:
        """Drop cached remote media unused since the time; return how many items went."""
        count, hashes = await self.store.purge_remote(accessed_before_ts)
        await self.release(hashes)
        return count
