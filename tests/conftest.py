"""Shared fixtures: a real PostgreSQL, a fresh database per test, an in-process server.

The DSN comes from HOMESERVER_TEST_DATABASE (e.g. postgresql://postgres@127.0.0.1:5432/postgres);
without it an embedded PostgreSQL (pgserver) is started for the session.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest

from homeserver.storage.db import run_migrations

TEST_DSN_ENV = "HOMESERVER_TEST_DATABASE"
_counter = itertools.count()


def _with_database(dsn: str, name: str) -> str:
    parts = urlparse(dsn)
    return urlunparse(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    dsn = os.environ.get(TEST_DSN_ENV)
    if dsn:
        yield dsn
        return
    import pgserver

    directory = Path(tempfile.mkdtemp(prefix="hs-test-pg-"))
    server = pgserver.get_server(directory, cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
async def template_database(pg_admin_dsn: str) -> str:
    """A migrated database that each test clones (fast: CREATE DATABASE ... TEMPLATE)."""
    name = f"hs_template_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(_with_database(pg_admin_dsn, name))
    await run_migrations(conn)
    await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def database_dsn(pg_admin_dsn: str, template_database: str) -> AsyncIterator[str]:
    name = f"hs_test_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield _with_database(pg_admin_dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def make_config(tmp_path: Path, database_dsn: str, **overrides: Any):
    from homeserver.config import parse_config

    raw: dict[str, Any] = {
        "server_name": "test.local",
        "data_dir": str(tmp_path / "data"),
        "database": database_dsn,
        "password_hash_rounds": 4,
        "registration": {"enabled": True},
        # Tests register many users from one address.
        "rate_limits": {
            "login": {"per_second": 1000, "burst": 1000},
            "registration": {"per_second": 1000, "burst": 1000},
        },
    }
    for key, value in overrides.items():
        raw[key] = value
    return parse_config(raw)


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def services(tmp_path: Path, database_dsn: str, config_overrides: dict[str, Any], monkeypatch):
    from homeserver.server import open_services

    monkeypatch.delenv("HOMESERVER_DATABASE", raising=False)
    config = make_config(tmp_path, database_dsn, **config_overrides)
    async with open_services(config) as svc:
        yield svc


@pytest.fixture
async def api(services):
    from aiohttp.test_utils import TestClient, TestServer

    from homeserver.app import create_app
    from tests.helpers import Api

    client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        yield Api(client, services)
    finally:
        await client.close()
