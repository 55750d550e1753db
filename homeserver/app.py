"""The app factory: wires config, pool, services and every route module into one aiohttp app."""

from __future__ import annotations

from aiohttp import web

from homeserver.appkeys import SERVICES
from homeserver.client import reports, tags
from homeserver.client import (
    account, account_data, account_management, admin_register, devices, directory, key_backup, keys, profile,
    presence, push_rules, receipts, relations, room_directory, room_events, rooms, sync, to_device,
    user_directory, versions, voip,
)
from homeserver.client import hierarchy, openid
from homeserver.client import sliding_sync
from homeserver.client import admin_users, login_token, refresh, rtc
from homeserver.client import mutual_rooms, notifications, room_summary, room_upgrade
from homeserver.client import search
from homeserver.client import health
from homeserver.client.base import add_client_routes
from homeserver import admin as synapse_admin
from homeserver.http import TRUSTED_PROXIES, matrix_middleware, trusted_networks
from homeserver import metrics
from homeserver.services.container import Services
from media import admin as media_admin, preview as media_preview
from media.app import setup_media
from federation.app import setup_federation

CLIENT_ROUTE_MODULES = (
    refresh, login_token, admin_users, rtc,
    versions, account, account_management, devices, profile, rooms, room_events, directory, sync,
    account_data, receipts, voip, keys, key_backup, to_device, user_directory, push_rules, room_directory,
    relations, presence, openid, room_upgrade, search,
    sliding_sync,
    room_summary, mutual_rooms, notifications,
    health,
)


def create_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[matrix_middleware, admin_users.suspension_middleware],
        client_max_size=services.config.limits.max_request_body_bytes,
    )
    app[SERVICES] = services
    hierarchy.install(app)
    for module in CLIENT_ROUTE_MODULES:
        add_client_routes(app.router, module.routes)
    admin_register.install(app)
    tags.install(app)
    reports.install(app)
    fed = setup_federation(app, services)
    app.cleanup_ctx.append(presence.idle_sweeper)
    repository = setup_media(app, services, federation_client=fed.client if fed is not None else None)
    services.erasure.media_deleter = repository  # erasure deletes the user's uploads with their files
    services.retention.remote_media = repository  # retention expires the remote media cache
    app.cleanup_ctx.append(services.retention.lifecycle)
    media_preview.install(app, repository)
    app.router.add_routes(media_admin.routes)
    synapse_admin.install(app)
    app[TRUSTED_PROXIES] = trusted_networks(services.config.trusted_proxies)
    metrics.install(app, services, federation_sender=fed.sender if fed is not None else None)
    # No catch-all route: the middleware turns aiohttp's 404 and 405 into M_UNRECOGNIZED,
    # and a catch-all would answer 404 where the spec wants 405 for a known path.
    return app
