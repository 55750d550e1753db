"""The typed key under which the media repository is handed to media route modules."""

from aiohttp import web

from media.repository import MediaRepository

MEDIA = web.AppKey("media_repository", MediaRepository)
