"""Choosing, making and caching thumbnails; Pillow runs in worker threads only.

The standard sizes are made when an image is uploaded; another size is made
the first time it is asked for and cached like the others. A request is
answered by the smallest cached thumbnail that covers it, by the original when
the original is no larger than what was asked, or else by a new thumbnail of
exactly that size.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Awaitable, Callable, TypeVar

from homeserver.config import MediaConfig
from homeserver.errors import MatrixError
from homeserver.services.clock import now_ms
from homeserver.storage.media import MediaStore, Thumbnail
from media import thumbnails
from media.names import essence
from media.store import ContentStore
from media.thumbnails import ImageTooLarge, Request, ThumbnailError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Source:
    """Media to thumbnail: local (origin "") or a cached remote item."""

    origin: str
    media_id: str
    sha256: str
    content_type: str


@dataclasses.dataclass(frozen=True)
class Served:
    sha256: str
    content_type: str


def cannot_thumbnail(reason: str = "Cannot generate thumbnails for the requested content") -> MatrixError:
    # The spec's example answer for content the server cannot thumbnail.
    return MatrixError(400, "M_UNKNOWN", reason)


def _too_large() -> MatrixError:
    # Spec, security considerations: images too large to thumbnail get 413 M_TOO_LARGE.
    return MatrixError(413, "M_TOO_LARGE", "Image is too large to thumbnail")


class Thumbnailer:
    def __init__(
        self, config: MediaConfig, store: MediaStore, content: ContentStore,
        release: Callable[[list[str]], Awaitable[None]],
    ):
        self.config = config
        self.store = store
        self.content = content
        self._release = release
        # Decoding is CPU and memory heavy: a few threads at most, whatever the load.
        self._threads = asyncio.Semaphore(config.thumbnail_threads)
        self._in_flight: dict[tuple, asyncio.Future[Served]] = {}

    async def _in_thread(self, function: Callable[..., T], *args) -> T:
        async with self._threads:
            return await asyncio.to_thread(function, *args)

    def thumbnailable(self, content_type: str) -> bool:
        return essence(content_type) in thumbnails.THUMBNAILABLE

    async def make_standard(self, source: Source) -> None:
        """At upload: the configured sizes, those smaller than the image. Never raises
        for a bad image: the upload stands, and a thumbnail request says what is wrong."""
        if not self.thumbnailable(source.content_type):
            return
        path = str(self.content.path(source.sha256))
        max_pixels = self.config.max_image_pixels
        try:
            probe = await self._in_thread(thumbnails.probe, path, max_pixels)
            wanted = [
                Request(size.width, size.height, size.method) for size in self.config.thumbnail_sizes
                if thumbnails.output_size(probe.width, probe.height, Request(size.width, size.height, size.method))[:2]
                != (probe.width, probe.height)
            ]
            if not wanted:
                return
            made = await self._in_thread(thumbnails.render, path, wanted, max_pixels)
        except ThumbnailError as e:
            log.info("no thumbnails for %s: %s", source.media_id, e)
            return
        for rendered in made:
            await self._save(source, rendered)

    async def thumbnail(self, source: Source, request: Request, animated: bool) -> Served:
        """What to send for a thumbnail request; MatrixError when there is nothing to send."""
        if not self.thumbnailable(source.content_type):
            raise cannot_thumbnail()
        cached = await self.store.thumbnails(source.origin, source.media_id)
        if hit := _smallest_covering(cached, request, animated):
            return Served(hit.sha256, hit.content_type)
        path = str(self.content.path(source.sha256))
        try:
            probe = await self._in_thread(thumbnails.probe, path, self.config.max_image_pixels)
        except ImageTooLarge:
            raise _too_large()
        except ThumbnailError:
            raise cannot_thumbnail("Cannot generate thumbnails: the image is corrupt or of an unsupported format")
        # Spec: when the media cannot be animated, behave as though animated were false.
        animated = animated and probe.animatable
        if not animated and (hit := _smallest_covering(cached, request, False)):
            return Served(hit.sha256, hit.content_type)
        # Spec: content smaller than the request is returned as it is, unless it
        # needs turning upright or is an animation that was not asked for.
        fits = probe.width <= request.width and probe.height <= request.height
        if fits and not probe.reoriented and probe.animated == animated:
            return Served(source.sha256, essence(source.content_type))
        # A thumbnail smaller than asked for (the image allowed no more) may exist already.
        out_w, out_h, _ = thumbnails.output_size(probe.width, probe.height, request)
        for t in cached:
            if (t.width, t.height, t.method, t.animated) == (out_w, out_h, request.method, animated):
                return Served(t.sha256, t.content_type)
        return await self._make_once(source, request, animated)

    async def _make_once(self, source: Source, request: Request, animated: bool) -> Served:
        """Make one thumbnail; concurrent requests for the same one share the work."""
        key = (source.origin, source.media_id, request, animated)
        if (pending := self._in_flight.get(key)) is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Served] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            served = await self._make(source, request, animated)
            future.set_result(served)
            return served
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as e:
            future.set_exception(e)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._in_flight[key]

    async def _make(self, source: Source, request: Request, animated: bool) -> Served:
        path = str(self.content.path(source.sha256))
        try:
            [rendered] = await self._in_thread(
                thumbnails.render, path, [request], self.config.max_image_pixels, animated
            )
        except ImageTooLarge:
            raise _too_large()
        except ThumbnailError:
            raise cannot_thumbnail("Cannot generate thumbnails: the image is corrupt or of an unsupported format")
        saved = await self._save(source, rendered)
        return Served(saved.sha256, saved.content_type)

    async def _save(self, source: Source, rendered: thumbnails.Rendered) -> Thumbnail:
        async with self.content.incoming() as incoming:
            await incoming.write(rendered.data)
            sha256 = await incoming.finish()
            thumbnail = Thumbnail(
                rendered.width, rendered.height, rendered.request.method, rendered.content_type,
                rendered.animated, sha256, len(rendered.data),
            )
            async with self.store.content_lock(sha256) as txn:
                await self.content.commit(incoming)
                inserted = await txn.insert_thumbnail(source.origin, source.media_id, thumbnail, now_ms())
        if inserted:
            return thumbnail
        await self._release([sha256])
        # The same thumbnail was recorded meanwhile, or the media was deleted.
        for existing in await self.store.thumbnails(source.origin, source.media_id):
            if (existing.width, existing.height, existing.method, existing.content_type, existing.animated) == (
                thumbnail.width, thumbnail.height, thumbnail.method, thumbnail.content_type, thumbnail.animated
            ):
                return existing
        raise MatrixError(404, "M_NOT_FOUND", "Media not found")


def _smallest_covering(cached: list[Thumbnail], request: Request, animated: bool) -> Thumbnail | None:
    fitting = [
        t for t in cached
        if t.animated == animated and thumbnails.covers(t.width, t.height, t.method, request)
    ]
    return min(fitting, key=lambda t: t.width * t.height, default=None)
