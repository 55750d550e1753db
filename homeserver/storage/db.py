"""Connection pool, transactions, the migration runner and the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import AsyncIterator

import asyncpg

log = logging.getLogger(__name__)



def _migrations_dir() -> Path:
    """migrations/ of the source checkout, or where a non-editable install put it."""
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "homeserver" / "migrations"


MIGRATIONS_DIR = _migrations_dir()
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# An arbitrary constant: the advisory lock that serialises migration runs.
_MIGRATION_LOCK_ID = 0x6D617472


# Connections the pool opens at start (and keeps).
MIN_CONNECTIONS = 4


def opaque_text_array(parameter: str) -> str:
    """A text array parameter (``$5``) as the planner sees it whatever its value: through
    a scalar subquery, made an array again. A plan made with the value then costs what
    the generic plan does (neither folds the array away nor costs it by its length), so
    PostgreSQL keeps the generic plan after its first runs instead of planning each run."""
    return f"ARRAY(SELECT unnest((SELECT {parameter}::text[])))"


class Database:
    """An asyncpg pool with helpers for one-statement calls and transactions."""

    def __init__(self, pool: asyncpg.Pool, dsn: str | None = None, application_name: str | None = None):
        self.pool = pool
        # Kept for the connections made outside the pool (services/cluster.py's listener).
        self.dsn = dsn
        self.application_name = application_name

    @classmethod
    async def connect(cls, dsn: str, max_size: int = 10, application_name: str | None = None) -> "Database":
        settings = {"application_name": application_name} if application_name else None
        # Prepared statements are kept (asyncpg's defaults forget each after 5 minutes and
        # keep only 100 per connection, fewer than the server's distinct statements), and so
        # are idle connections for an hour: otherwise a quiet server's next /sync plans every
        # one of its statements again, the cold path of issue 7. A few connections are
        # opened at start: /sync reads side by side, and the first /sync after a restart
        # otherwise waits for each of its connections to be made (75 -> 63 ms for 50 rooms).
        pool = await asyncpg.create_pool(dsn, min_size=min(MIN_CONNECTIONS, max_size), max_size=max_size,
                                         reset=_keep_session, init=_learn_array_types,
                                         server_settings=settings, statement_cache_size=1024,
                                         max_cached_statement_lifetime=0,
                                         max_inactive_connection_lifetime=3600)
        return cls(pool, dsn, application_name)

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                yield conn

    async def fetch(self, query: str, *args):
        return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args):
        return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args):
        return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args) -> str:
        return await self.pool.execute(query, *args)


async def _learn_array_types(conn: asyncpg.Connection) -> None:
    """Once per new connection: asyncpg learns the array types our statements use
    (bigint[], bool[]) from the server's catalogue the first time a statement has one,
    a query of its own on the way of that request (5 ms, on each connection of the first
    /sync after a start)."""
    await conn.fetchval("SELECT $1::bigint[] IS NULL AND $2::bool[] IS NULL", None, None)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset on release: a round trip per query, and no code here
    changes session state (no SET, LISTEN or temporary tables on pooled connections)."""


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise RuntimeError(f"migration file {path.name} is not named NNNN_name.sql")
        files.append((int(match.group(1)), path))
    versions = [v for v, _ in files]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migration files share a number")
    return files


async def run_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply every migration not yet recorded, in order, under an advisory lock.

    Several processes may start at once against one database: the lock makes
    the second wait and then find nothing left to do.
    """
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version INTEGER PRIMARY KEY,
                   name TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, path in migration_files(directory):
            if version in done:
                continue
            log.info("applying migration %s", path.name)
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name
                )
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now


class EmbeddedPostgres:
    """A PostgreSQL server inside the data directory, via the pgserver package.

    Started with the homeserver and stopped with it. If the homeserver was
    killed, the next start finds the old postmaster and reuses or restarts it.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self._server = None

    def start(self) -> str:
        import pgserver  # imported here: only needed when no database is configured

        self.directory.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles()
        self._server = pgserver.get_server(self.directory, cleanup_mode="stop")
        dsn = self._server.get_uri()
        return dsn

    def _forget_dead_handles(self) -> None:
        """Drop the pids of killed homeservers from pgserver's list of handle holders.

        pgserver stops PostgreSQL when its last holder exits; a holder killed with
        -9 never leaves the list, and PostgreSQL would then outlive every later run.
        """
        handles = self.directory / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (FileNotFoundError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


async def ensure_database(dsn: str) -> str:
    """Create the database named in the DSN if it does not exist; return the DSN."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        name = _database_name(dsn)
        admin = await asyncpg.connect(dsn, database="postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return dsn
    await conn.close()
    return dsn


def _database_name(dsn: str) -> str:
    from urllib.parse import urlparse

    name = urlparse(dsn).path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name or ""):
        raise RuntimeError(f"cannot create database {name!r}: unusual name, create it by hand")
    return name


async def wait_for_database(dsn: str, attempts: int = 30) -> None:
    for attempt in range(attempts):
        try:
            conn = await asyncpg.connect(dsn)
            await conn.close()
            return
        except (OSError, asyncpg.CannotConnectNowError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
