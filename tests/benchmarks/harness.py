"""What the benchmarks share: a fresh database, an in-process server on it, query counting
(tests/helpers.py count_queries, the tests' own)."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlparse, urlunparse

import asyncpg

from tests.helpers import count_queries

__all__ = ["count_queries", "fresh_database", "in_process_server"]


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str, prefix: str = "hs_bench") -> AsyncIterator[str]:
    """A new empty database in the PostgreSQL of ``admin_dsn``, dropped afterwards: its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunparse(urlparse(admin_dsn)._replace(path="/" + name))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def in_process_server(
    admin_dsn: str, prefix: str = "hs_bench", **config_overrides: Any,
) -> AsyncIterator[tuple[Any, Any]]:
    """The app on a fresh database, served in this process (so its queries can be counted),
    configured as the tests' (tests/conftest.py make_config): (tests.helpers.Api, Services)."""
    from homeserver.server import open_services
    from tests.conftest import make_config
    from tests.helpers import served

    async with fresh_database(admin_dsn, prefix) as dsn:
        with tempfile.TemporaryDirectory() as directory:
            async with open_services(make_config(Path(directory), dsn, **config_overrides)) as services:
                async with served(services) as api:
                    yield api, services
