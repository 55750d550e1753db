"""The real homeserver process, started for each end-to-end test on a fresh database."""

import pytest

from tests.e2e.server_process import ServerProcess


@pytest.fixture
def server(tmp_path, database_dsn):
    process = ServerProcess(tmp_path / "hs", database_dsn)
    process.start()
    yield process
    process.stop()
