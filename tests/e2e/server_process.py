"""Start the real `homeserver run` process for black-box tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One homeserver process on 127.0.0.1, restartable on the same data and database."""

    def __init__(self, directory: Path, database_dsn: str | None, server_name: str = "e2e.local", **config):
        self.directory = directory
        self.port = free_port()
        self.config_path = directory / "homeserver.yaml"
        raw = {
            "server_name": server_name,
            "listen": {"host": "127.0.0.1", "port": self.port},
            "data_dir": str(directory / "data"),
            "password_hash_rounds": 4,
            "registration": {"enabled": True},
            "rate_limits": {
                "login": {"per_second": 1000, "burst": 1000},
                "registration": {"per_second": 1000, "burst": 1000},
            },
            "log_level": "WARNING",
            **config,
        }
        if database_dsn is not None:
            raw["database"] = database_dsn
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(raw))
        self.process: subprocess.Popen | None = None
        self.log_path = directory / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if k != "HOMESERVER_DATABASE"}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homeserver.cli", "-c", str(self.config_path), "run"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base_url + "/_matrix/client/versions", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
