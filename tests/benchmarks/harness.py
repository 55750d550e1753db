"""What the benchmarks share: a fresh database, an in-process server on it, query counting
(tests/helpers.py count_queries, the tests' own), and CPU time read from /proc."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlparse, urlunparse

import asyncpg

from tests.helpers import count_queries

__all__ = ["CpuMeter", "count_queries", "cpu_seconds", "fresh_database", "in_process_server"]

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process so far (utime + stime, from /proc; in clock ticks of 10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass  # gone meanwhile
    return pids


class CpuMeter:
    """CPU seconds spent over a ``with`` block by the server processes (``pids``), by every
    PostgreSQL process of the machine, and by this process (the benchmark's clients).
    On a machine whose speed varies, CPU per unit of work says more than a rate."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.servers: list[float] = []
        self.postgres = 0.0
        self.clients = 0.0

    def _postgres(self) -> dict[int, float]:
        out = {}
        for pid in _postgres_pids():
            try:
                out[pid] = cpu_seconds(pid)
            except OSError:
                pass
        return out

    def __enter__(self) -> "CpuMeter":
        self._servers = [cpu_seconds(p) for p in self.pids]
        self._pg = self._postgres()
        self._clients = time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.servers = [cpu_seconds(p) - before for p, before in zip(self.pids, self._servers)]
        # Backends that ended meanwhile are not counted; those that began count from zero.
        self.postgres = sum(now - self._pg.get(pid, 0.0) for pid, now in self._postgres().items())
        self.clients = time.process_time() - self._clients

    def per_item_ms(self, items: int) -> str:
        servers = " + ".join(f"{s / items * 1000:.2f}" for s in self.servers)
        return (f"servers {servers} ms, PostgreSQL {self.postgres / items * 1000:.2f} ms, "
                f"clients {self.clients / items * 1000:.2f} ms")


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
