"""Start the real `homeserver run` process for black-box tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tests.federation.tls_cert import make_self_signed_certificate


# The self-signed certificate of a tls=True server is not checked by the readiness probe.
_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One homeserver process on 127.0.0.1, restartable on the same data and database."""

    def __init__(self, directory: Path, database_dsn: str | None, server_name: str | None = None, *,
                 tls: bool = False, **config):
        """`tls=True` adds an HTTPS listener (self-signed certificate) on `tls_port` and makes
        the server name "127.0.0.1:<tls_port>", as a federation peer such as Synapse reaches
        it; outbound federation then skips certificate checks and may reach 127.0.0.1.
        The plain HTTP listener (`base_url`) stays for the test's client calls.
        """
        self.directory = directory
        self.port = free_port()
        self.tls_port: int | None = None
        self.config_path = directory / "homeserver.yaml"
        directory.mkdir(parents=True, exist_ok=True)
        tls_config: dict = {}
        if tls:
            self.tls_port = free_port()
            cert = make_self_signed_certificate(directory)
            server_name = server_name or f"127.0.0.1:{self.tls_port}"
            tls_config = {
                "tls_listen": {"host": "127.0.0.1", "port": self.tls_port,
                               "certificate": str(cert.certificate), "private_key": str(cert.private_key)},
                "federation": {"verify_certificates": False, "ip_range_allowlist": ["127.0.0.1/32"],
                               "trusted_key_servers": [], **config.pop("federation", {})},
            }
        self.server_name = server_name or "e2e.local"
        raw = {
            "server_name": self.server_name,
            "listen": {"host": "127.0.0.1", "port": self.port},
            "data_dir": str(directory / "data"),
            "password_hash_rounds": 4,
            "registration": {"enabled": True},
            "rate_limits": {
                "login": {"per_second": 1000, "burst": 1000},
                "registration": {"per_second": 1000, "burst": 1000},
            },
            "log_level": "WARNING",
            **tls_config,
            **config,
        }
        if database_dsn is not None:
            raw["database"] = database_dsn
        self.database_dsn = database_dsn
        self.config_path.write_text(yaml.safe_dump(raw))
        self.process: subprocess.Popen | None = None
        self.log_path = directory / "server.log"
        # Extra arguments of `run` (a sibling process: --port).
        self.run_args: list[str] = []

    def sibling(self, directory: Path) -> "ServerProcess":
        """Another process of the same server: this one's config file and database, its own port
        (`homeserver run --port`, docs/scaling.md). Of a tls=True server, a copy of the config
        without the HTTPS listener: the first process's serves federation (one port, one owner)."""
        other = object.__new__(ServerProcess)
        other.__dict__.update(self.__dict__)
        directory.mkdir(parents=True, exist_ok=True)
        if self.tls_port is not None:
            raw = yaml.safe_load(self.config_path.read_text())
            raw.pop("tls_listen", None)
            other.config_path = directory / "homeserver.yaml"
            other.config_path.write_text(yaml.safe_dump(raw))
        other.directory = directory
        other.port = free_port()
        other.tls_port = None
        other.process = None
        other.log_path = directory / "server.log"
        other.run_args = ["--port", str(other.port)]
        return other

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """The HTTPS listener (tls=True), where other servers reach this one."""
        if self.tls_port is None:
            raise AttributeError("this server was started without tls=True")
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def federation_name(self) -> str:
        """The server name other servers address this one by ("127.0.0.1:<tls_port>" with tls=True)."""
        return self.server_name

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def start(self, timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if k != "HOMESERVER_DATABASE"}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homeserver.cli", "-c", str(self.config_path), "run", *self.run_args],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base_url + "/_matrix/client/versions", timeout=1):
                    pass
                if self.tls_port is not None:
                    with urllib.request.urlopen(self.tls_url + "/_matrix/client/versions", timeout=1,
                                                context=_UNVERIFIED):
                        pass
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
