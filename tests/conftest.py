"""Shared fixtures: a real PostgreSQL, a fresh database per test, an in-process server.

The DSN comes from HOMESERVER_TEST_DATABASE (e.g. postgresql://postgres@127.0.0.1:5432/postgres);
without it an embedded PostgreSQL (pgserver) is started for the session.
"""

from __future__ import annotations

import asyncio
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


_SCHEMA_FINGERPRINT = """
    SELECT md5(coalesce(string_agg(table_name || '.' || column_name || ':' || data_type, ','
                        ORDER BY table_name, column_name), ''))
    FROM information_schema.columns WHERE table_schema = 'public'
"""


class _DatabasePool:
    """Test databases whose tests are over, emptied and ready for the next test.

    Emptying a database (DELETE) costs a fraction of CREATE DATABASE plus
    DROP DATABASE, which forces a checkpoint of everything the test wrote.
    A database is reused only when its schema still equals the template's;
    otherwise it is dropped, so every test still starts from the template.
    """

    def __init__(self, admin_dsn: str, template: str, fingerprint: str, reusable: bool):
        self.admin_dsn = admin_dsn
        self.template = template
        self.fingerprint = fingerprint
        self.reusable = reusable
        self.free: list[str] = []
        self.all: set[str] = set()

    async def take(self) -> str:
        if self.free:
            return self.free.pop()
        name = f"hs_test_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        finally:
            await admin.close()
        self.all.add(name)
        return name

    async def give_back(self, name: str) -> None:
        if self.reusable and await self._empty(name):
            self.free.append(name)
        else:
            await self.drop(name)

    async def _empty(self, name: str) -> bool:
        conn = await asyncpg.connect(_with_database(self.admin_dsn, name))
        try:
            # Connections a test left open could hold locks against the deletes, and
            # session locks (the cluster's leader lock) against the next test. Terminating
            # only signals a backend: wait until each has gone, and its locks with it.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for _ in range(500):
                if not await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend')"
                ):
                    break
                await asyncio.sleep(0.01)
            if await conn.fetchval(_SCHEMA_FINGERPRINT) != self.fingerprint:
                return False
            tables = [r[0] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )]
            # DELETE rather than TRUNCATE: the tables are small, and TRUNCATE makes
            # new files for every table and index. Foreign key triggers are off
            # (replica role) so the order of the deletes does not matter.
            async with conn.transaction():
                await conn.execute(
                    "SET LOCAL session_replication_role = replica; "
                    + "".join(f'DELETE FROM "{table}"; ' for table in tables)
                    # As fresh from the template: each sequence's next value is its start.
                    + "SELECT setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s"
                    " JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'public'::regnamespace"
                )
            return True
        except asyncpg.PostgresError:
            return False
        finally:
            await conn.close()

    async def drop(self, name: str) -> None:
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        self.all.discard(name)


@pytest.fixture(scope="session")
async def database_pool(pg_admin_dsn: str, template_database: str) -> AsyncIterator[_DatabasePool]:
    conn = await asyncpg.connect(_with_database(pg_admin_dsn, template_database))
    try:
        fingerprint = await conn.fetchval(_SCHEMA_FINGERPRINT)
        # Emptying tables is only equal to a fresh copy when the template holds no rows.
        tables = [r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )]
        seeded = False
        for table in tables:
            seeded = seeded or bool(await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'))
    finally:
        await conn.close()
    pool = _DatabasePool(pg_admin_dsn, template_database, fingerprint, reusable=not seeded)
    yield pool
    for name in list(pool.all):
        await pool.drop(name)


@pytest.fixture
async def database_dsn(pg_admin_dsn: str, database_pool: _DatabasePool) -> AsyncIterator[str]:
    name = await database_pool.take()
    try:
        yield _with_database(pg_admin_dsn, name)
    finally:
        await database_pool.give_back(name)


def make_config(tmp_path: Path, database_dsn: str, **overrides: Any):
    from homeserver.config import parse_config

    raw: dict[str, Any] = {
        "server_name": "test.local",
        "data_dir": str(tmp_path / "data"),
        "database": database_dsn,
        "password_hash_rounds": 4,
        "registration": {"enabled": True},
        # Tests use short passwords; tests/test_admin_papercuts.py checks the policy.
        "password_config": {"minimum_length": 1},
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
    from tests.helpers import served

    async with served(services) as served_api:
        yield served_api
