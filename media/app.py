"""Mounting the media repository on the app: its content store, service and routes."""

from __future__ import annotations

from aiohttp import web

from homeserver.services.container import Services
from media import routes
from media.app_keys import MEDIA
from media.repository import MediaRepository
from media.store import ContentStore


def build_repository(services: Services) -> MediaRepository:
    """The repository on the data directory's store; also used by the admin commands."""
    content = ContentStore(services.config.data_dir / "media")
    content.prepare()
    return MediaRepository(services.config, services.media, content)


def setup_media(app: web.Application, services: Services) -> MediaRepository:
    repository = build_repository(services)
    app[MEDIA] = repository
    app.router.add_routes(routes.routes)
    return repository
