"""Mounting the media repository on the app: its content store, service and routes."""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from homeserver.services.container import Services
from homeserver.storage.url_previews import UrlPreviewStore
from media import federation, routes
from media.app_keys import MEDIA
from media.federation import FederationMediaFetcher, MediaFederationClient
from media.previewer import UrlPreviewer
from media.repository import MediaRepository
from media.store import ContentStore


def build_repository(services: Services) -> MediaRepository:
    """The repository on the data directory's store; also used by the admin commands."""
    content = ContentStore(services.config.data_dir / "media")
    content.prepare()
    return MediaRepository(services.config, services.media, content)


def build_previewer(services: Services, repository: MediaRepository) -> UrlPreviewer | None:
    """The URL previewer, or None while the admin has not enabled previews."""
    config = services.config.media.url_preview
    if not config.enabled:
        return None
    return UrlPreviewer(config, UrlPreviewStore(services.db), repository)


def setup_media(
    app: web.Application, services: Services, federation_client: MediaFederationClient | None = None,
) -> MediaRepository:
    """Mounts the client and federation media routes.

    federation_client (the FederationClient, or anything with its get_stream) lets
    clients download media of other servers; without it only cached remote media
    is served (as when federation is disabled). It can also be given later, before
    the app starts, with `use_federation`.
    """
    repository = build_repository(services)
    app[MEDIA] = repository
    app.router.add_routes(routes.routes)
    app.router.add_routes(federation.routes)
    if federation_client is not None and services.config.federation.enabled:
        use_federation(app, repository, federation_client)
    return repository


def use_federation(app: web.Application, repository: MediaRepository, client: MediaFederationClient) -> None:
    """Fetch remote media through client; the fetcher is closed with the app."""
    fetcher = FederationMediaFetcher(client, repository.config)
    repository.remote_fetcher = fetcher

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        yield
        await fetcher.close()

    app.cleanup_ctx.append(lifecycle)
