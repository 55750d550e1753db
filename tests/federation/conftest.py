"""Federation test fixtures: a real Synapse beside our server, which listens on HTTPS too.

- `synapse_install` (session): the Synapse virtualenv, installed on first use (printed);
  a failed install fails the tests that need it, loudly.
- `synapse` (module): one running `SynapsePeer`, "127.0.0.1:<port>", fresh database.
  `await synapse.register("alice")` -> SynapseUser(user_id, access_token);
  `async with synapse.client(user) as c: await c.create_room(...)`.
- `our_server_tls` (function): our server process (`ServerProcess(..., tls=True)`) named
  "127.0.0.1:<tls_port>", HTTPS there, plain HTTP at `.base_url`, fresh database.
- `start_our_server_tls` (function): a factory for more of those, `start_our_server_tls(**config)`.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import pytest

from tests.conftest import _with_database
from tests.e2e.server_process import ServerProcess
from tests.federation.synapse_peer import SynapseInstall, SynapsePeer, ensure_synapse


def _say(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Print past pytest's output capture: a first install takes a while, and should say so."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            sys.stderr.write(f"\n[synapse] {message}\n")
            sys.stderr.flush()

    return say


@pytest.fixture(scope="session")
def synapse_install(pytestconfig: pytest.Config) -> SynapseInstall:
    try:
        return ensure_synapse(progress=_say(pytestconfig))
    except RuntimeError as e:
        problem = str(e)
    # A failure, never a skip: without Synapse the interop tests would pass by not running.
    pytest.fail(f"the Synapse needed by the federation tests could not be installed: {problem}", pytrace=False)


@pytest.fixture(scope="module")
async def synapse(tmp_path_factory, pg_admin_dsn: str, synapse_install: SynapseInstall, pytestconfig):
    peer = SynapsePeer(tmp_path_factory.mktemp("synapse"), pg_admin_dsn, synapse_install)
    try:
        await peer.start()
        _say(pytestconfig)(f"Synapse {synapse_install.version} up as {peer.server_name} "
                           f"in {peer.last_start_seconds:.1f} s (logs: {peer.log_path})")
        yield peer
    finally:
        await peer.close()


@pytest.fixture
async def start_our_server_tls(tmp_path, pg_admin_dsn: str, database_pool):
    started: list[tuple[ServerProcess, str]] = []

    async def start(**config: Any) -> ServerProcess:
        database = await database_pool.take()
        server = ServerProcess(tmp_path / f"hs{len(started)}", _with_database(pg_admin_dsn, database),
                               tls=True, **config)
        started.append((server, database))
        server.start()
        return server

    yield start
    for server, database in started:
        server.stop()
        await database_pool.give_back(database)


@pytest.fixture
async def our_server_tls(start_our_server_tls) -> ServerProcess:
    return await start_our_server_tls(log_level="INFO")
