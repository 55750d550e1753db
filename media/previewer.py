"""The URL previewer: fetches a page safely, parses its OpenGraph tags, keeps the result.

Served by media/preview.py (GET /_matrix/client/v1/media/preview_url); built by
media/app.py when the admin enabled previews. Pages are fetched through
media.safe_fetch (address checks, manual redirects, size and time limits), and
the page's image is stored as local media so clients can show it by mxc:// URI.
Results are kept in PostgreSQL until they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, AsyncIterator

from PIL import Image

from homeserver.config import UrlPreviewConfig
from homeserver.errors import MatrixError
from homeserver.services.clock import now_ms
from homeserver.storage.url_previews import UrlPreviewStore
from media.names import essence
from media.opengraph import decode_html, parse_open_graph
from media.repository import MediaRepository
from media.safe_fetch import (
    AddressPolicy, BodyTooLarge, DestinationDenied, FetchError, SafeFetcher, SafeResponse,
)

log = logging.getLogger(__name__)

# Expired previews are forgotten this often, with their images once they have been
# expired this long (clients may still show a preview they fetched a while ago).
_CLEANUP_INTERVAL_S = 600
_KEEP_EXPIRED_MS = 24 * 3600 * 1000
# Carries the media id of a previewed image between two steps; never sent to clients.
_MEDIA_ID_KEY = "media_id"
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# Images a preview keeps: the raster formats every client shows (no SVG: scripts).
_PREVIEW_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def _is_html(content_type: str) -> bool:
    return essence(content_type) in _HTML_TYPES


def _is_image(content_type: str) -> bool:
    return essence(content_type).startswith("image/")


class UrlPreviewer:
    def __init__(self, config: UrlPreviewConfig, store: UrlPreviewStore, media: MediaRepository):
        self.config = config
        self.store = store
        self.media = media
        self.fetcher = SafeFetcher(
            AddressPolicy(config.ip_range_allowlist, config.ip_range_denylist),
            max_bytes=config.max_page_bytes,
            max_redirects=config.max_redirects,
            accept_language=config.accept_language,
            connect_timeout_s=config.timeout_seconds,
        )
        # One fetch per URL at a time: a link posted in a busy room is previewed
        # by every member's client at once.
        self._in_flight: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def close(self) -> None:
        await self.fetcher.close()

    async def preview(self, url: str, user_id: str, ts: int) -> dict[str, Any]:
        # Requests for a URL join the one already looking it up, cache read included:
        # a cache miss read just before another request stored its result would
        # otherwise fetch the page a second time.
        pending = self._in_flight.get(url)
        if pending is None:
            pending = asyncio.ensure_future(self._cached_or_fetched(url, user_id, ts))
            self._in_flight[url] = pending
            pending.add_done_callback(lambda done: self._finished(url, done))
        # shield: a client hanging up must not cancel the lookup others wait on.
        return await asyncio.shield(pending)

    async def _cached_or_fetched(self, url: str, user_id: str, ts: int) -> dict[str, Any]:
        now = now_ms()
        cached = await self.store.get(url, ts)
        if cached is not None and cached.expires_ts > ts:
            return cached.og
        # Nothing for that time: the spec lets us answer with a newer preview.
        latest = await self.store.get(url, now)
        if latest is not None and latest.expires_ts > now:
            return latest.og
        return await self._fetch_and_store(url, user_id)

    def _finished(self, url: str, done: asyncio.Future) -> None:
        self._in_flight.pop(url, None)
        if not done.cancelled():
            done.exception()  # retrieved here, so an error nobody waited for is not logged as lost

    async def _fetch_and_store(self, url: str, user_id: str) -> dict[str, Any]:
        fetched_ts = now_ms()
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                og, image_url = await self._fetch_page(url, user_id)
        except TimeoutError:
            raise MatrixError(504, "M_UNKNOWN", "The page took too long to load")
        except DestinationDenied as e:
            raise MatrixError(403, "M_FORBIDDEN", str(e))
        except BodyTooLarge as e:
            raise MatrixError(502, "M_TOO_LARGE", str(e))
        except FetchError as e:
            raise MatrixError(502, "M_UNKNOWN", str(e))
        media_id = og.pop(_MEDIA_ID_KEY, None)
        if image_url is not None:
            media_id = await self._fetch_image(image_url, user_id, og)
        await self.store.add(url, fetched_ts, fetched_ts + self.config.cache_seconds * 1000, og, media_id)
        return og

    async def _fetch_page(self, url: str, user_id: str) -> tuple[dict[str, Any], str | None]:
        """The page's OpenGraph data and the URL of its image, still to be fetched."""
        async with self.fetcher.open(url) as page:
            if _is_image(page.content_type):
                # A link straight to an image previews as that image.
                stored = await self._store_image(page, user_id)
                if stored is None:
                    return {}, None
                og, media_id = stored
                og["og:description"] = page.url.name or str(page.url)
                return {**og, _MEDIA_ID_KEY: media_id}, None
            if not _is_html(page.content_type):
                raise FetchError(f"Cannot preview content of type {essence(page.content_type)}")
            body = await page.read()
        og = await asyncio.to_thread(_parse_page, body, page.charset, str(page.url))
        return og, og.pop("og:image", None)

    async def _fetch_image(self, image_url: str, user_id: str, og: dict[str, Any]) -> str | None:
        """Stores the page's image and points og:image at it; the preview stands without it."""
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                async with self.fetcher.open(image_url) as image_page:
                    if not _is_image(image_page.content_type):
                        return None
                    stored = await self._store_image(image_page, user_id)
        except (FetchError, TimeoutError) as e:
            log.info("preview image %s not fetched: %r", image_url, e)
            return None
        if stored is None:
            return None
        image_og, media_id = stored
        og.update(image_og)
        return media_id

    async def _store_image(self, page: SafeResponse, user_id: str) -> tuple[dict[str, Any], str] | None:
        """Stores an image as local media of the user who asked, as Synapse does; returns
        its og:image* keys and media id, or None when it is not an image we keep."""
        content_type = essence(page.content_type)
        if content_type not in _PREVIEW_IMAGE_TYPES:
            return None
        try:
            mxc = await self.media.upload(user_id, page.chunks(), None, content_type, None)
        except MatrixError as e:
            # Over the upload rate or the storage quota: the preview goes without its image.
            log.info("preview image not stored: %s", e.error)
            return None
        media_id = mxc.rsplit("/", 1)[1]
        stored = await self.media.store.get_local(media_id)
        og: dict[str, Any] = {"og:image": mxc, "og:image:type": content_type, "matrix:image:size": stored.size}
        size = await asyncio.to_thread(_image_size, self.media.content.path(stored.sha256))
        if size is not None:
            og["og:image:width"], og["og:image:height"] = size
        return og, media_id

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Background cleanup of expired previews while the app runs."""
        task = asyncio.create_task(self._cleanup_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.close()

    async def _cleanup_loop(self) -> None:
        while True:
            try:
                for media_id in await self.store.delete_expired(now_ms() - _KEEP_EXPIRED_MS):
                    await self.media.delete_local(media_id)
            except Exception:
                log.exception("could not delete expired URL previews")
            await asyncio.sleep(_CLEANUP_INTERVAL_S)


def _image_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the image header; the pixels are not decoded."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, Image.DecompressionBombError):
        return None


def _parse_page(body: bytes, charset: str | None, page_url: str) -> dict[str, Any]:
    return parse_open_graph(decode_html(body, charset), page_url)
