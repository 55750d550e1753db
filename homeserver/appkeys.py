"""Typed keys under which the app factory hands services to route modules."""

from aiohttp import web

from homeserver.services.container import Services

SERVICES = web.AppKey("services", Services)
