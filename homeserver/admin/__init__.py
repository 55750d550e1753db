"""Synapse's admin API (/_synapse/admin), for synapse-admin and admins' scripts.

Each module is one area (users, devices, rooms, registration tokens, server); `install`
builds the admin services and mounts every route. Shared-secret registration, whois,
media and event reports live beside the modules that own those features
(client/admin_register.py, client/admin_users.py, media/admin.py, client/reports.py).
"""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from homeserver.admin import devices, federation, registration_tokens, rooms, server, users
from homeserver.admin.base import ADMIN_SERVICES
from homeserver.appkeys import SERVICES
from homeserver.services.admin_container import build_admin_services

ROUTE_MODULES = (server, users, devices, rooms, registration_tokens, federation)


def install(app: web.Application) -> None:
    app[ADMIN_SERVICES] = build_admin_services(app[SERVICES])
    _wire_federation_sender(app)
    for module in ROUTE_MODULES:
        app.router.add_routes(module.routes)
    app.cleanup_ctx.append(_room_deletes)
    app.cleanup_ctx.append(_history_purges)


async def _room_deletes(app: web.Application) -> AsyncIterator[None]:
    deleter = app[ADMIN_SERVICES].room_deleter
    await deleter.fail_interrupted_jobs()
    yield
    await deleter.stop()


async def _history_purges(app: web.Application) -> AsyncIterator[None]:
    purger = app[ADMIN_SERVICES].history_purger
    await purger.fail_interrupted_jobs()
    yield
    await purger.stop()


def _wire_federation_sender(app: web.Application) -> None:
    """reset_connection ends the running sender's backoff and wakes it; the estimates of the
    destinations' retry timings use its backoff rule. Called after federation/app.py has
    put its context on the app (homeserver/app.py mounts the admin API last)."""
    from federation.app_keys import FEDERATION  # wiring only: the admin routes never see it

    fed = app.get(FEDERATION)
    if fed is None:  # federation disabled: the table alone is reset
        return
    admin = app[ADMIN_SERVICES].federation
    admin.destination_up = fed.sender.notify_destination_up
    admin.initial_backoff_ms = int(fed.sender.initial_backoff_seconds * 1000)
    admin.max_backoff_ms = int(fed.sender.max_backoff_seconds * 1000)
