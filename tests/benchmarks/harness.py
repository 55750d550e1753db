"""What the benchmarks share: a fresh database, an in-process server on it, query counting."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlparse, urlunparse

import asyncpg


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


def count_queries(db: Any) -> dict[str, int]:
    """Count every call of the Database's query methods in ``counted["n"]`` from now on."""
    counted = {"n": 0}
    for method_name in ("fetch", "fetchrow", "fetchval", "execute"):
        method = getattr(db, method_name)

        async def counting(*args: Any, _method: Any = method) -> Any:
            counted["n"] += 1
            return await _method(*args)

        setattr(db, method_name, counting)
    return counted
