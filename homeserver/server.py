"""Starting and stopping: database (external or embedded), migrations, services, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from aiohttp import web

from homeserver.app import create_app
from homeserver.metrics import METRICS, metrics_app
from homeserver.config import Config, TlsListenConfig
from homeserver.services.cluster import application_name_for, new_instance_id
from homeserver.services.container import Services, build_services
from homeserver.signing_key import load_or_create_signing_key
from homeserver.storage.db import Database, EmbeddedPostgres, ensure_database, run_migrations

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The server cannot start; the message tells the admin why, in one line."""


def _without_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.asynccontextmanager
async def open_database(config: Config) -> AsyncIterator[Database]:
    """Connect to the configured PostgreSQL, or start the embedded one; migrate; yield."""
    embedded = None
    dsn = config.database_dsn
    if dsn is None:
        embedded = EmbeddedPostgres(config.data_dir / "postgres")
        log.info("starting embedded PostgreSQL in %s", embedded.directory)
        dsn = await asyncio.to_thread(embedded.start)
    try:
        try:
            if embedded is None:
                await ensure_database(dsn)
            # Every connection is named after this process, so the others see whether it lives.
            db = await Database.connect(dsn, max_size=config.database_pool_size,
                                        application_name=application_name_for(new_instance_id()))
        except (OSError, asyncpg.PostgresError) as e:
            raise StartupError(f"cannot use the database {_without_password(dsn)}: {e}") from e
        try:
            async with db.pool.acquire() as conn:
                applied = await run_migrations(conn)
            if applied:
                log.info("applied migrations %s", applied)
            yield db
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


@contextlib.asynccontextmanager
async def open_services(config: Config) -> AsyncIterator[Services]:
    signing_key = load_or_create_signing_key(config.signing_key_file)
    async with open_database(config) as db:
        services = await build_services(config, db, signing_key)
        # Other processes on this database learn of us, and we of their positions, before we serve.
        await services.cluster.start()
        try:
            yield services
        finally:
            await services.notifications.settle_all()
            await services.cluster.stop()


def _tls_context(tls: TlsListenConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.certificate, tls.private_key)
    except (OSError, ssl.SSLError) as e:
        raise StartupError(f"cannot load the TLS certificate {tls.certificate} or key {tls.private_key}: {e}") from e
    return context


async def _listen(runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from e


async def serve(config: Config) -> None:
    async with open_services(config) as services:
        app = create_app(services)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await _listen(runner, config.listen.host, config.listen.port)
            log.info("listening on http://%s:%d as %s", config.listen.host, config.listen.port, config.server_name)
            if config.tls_listen is not None:
                # The same app over HTTPS, for peers that reach us directly (tests: Synapse).
                tls = config.tls_listen
                await _listen(runner, tls.host, tls.port, _tls_context(tls))
                log.info("listening on https://%s:%d", tls.host, tls.port)
            metrics_runner = await _start_metrics(app, config)
        except StartupError:
            await runner.cleanup()
            raise
        # What start-up built (modules, config, services) lives as long as the process: moved
        # out of the collector's view, a full collection no longer walks it during early requests.
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        services.notifier.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()


async def _start_metrics(app: web.Application, config: Config) -> web.AppRunner | None:
    """The Prometheus listener (config metrics), apart from the Matrix one: /metrics is not public."""
    if METRICS not in app:
        return None
    runner = web.AppRunner(metrics_app(app[METRICS]), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await _listen(runner, config.metrics.host, config.metrics.port)
    except StartupError:
        await runner.cleanup()
        raise
    log.info("metrics on http://%s:%d/metrics", config.metrics.host, config.metrics.port)
    return runner
