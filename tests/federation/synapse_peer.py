"""A real Synapse (matrix-synapse from PyPI) on 127.0.0.1, as a federation peer for interop tests.

Synapse lives in a virtualenv of its own (default `<repo>/.venv-synapse`, or the
directory named by HOMESERVER_TEST_SYNAPSE_VENV), made once per machine and reused.
Each `SynapsePeer` gets a fresh PostgreSQL database and a directory of its own:

    peer = SynapsePeer(directory, admin_dsn, ensure_synapse())
    await peer.start()
    alice = await peer.register("alice")            # SynapseUser(user_id, access_token)
    async with peer.client(alice) as c:
        room_id = await c.create_room(preset="public_chat")
    await peer.restart()                             # same data, same database
    await peer.close()                               # stop, drop the database

Its server name is "127.0.0.1:<tls_port>": other servers reach it over HTTPS there
(client and federation resources, self-signed certificate). The test's own client
calls go to a plain HTTP client listener, `peer.client_url`.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import yaml

from tests.e2e.server_process import free_port
from tests.federation.tls_cert import make_self_signed_certificate

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_ENV = "HOMESERVER_TEST_SYNAPSE_VENV"
# One minor series, so that every machine runs the Synapse the tests were written against.
SYNAPSE_REQUIREMENT = "matrix-synapse==1.163.*"
EXTRA_REQUIREMENTS = ["psycopg2-binary"]
DEFAULT_PASSWORD = "correct horse battery staple"


# --- installation -------------------------------------------------------------------------


@dataclass(frozen=True)
class SynapseInstall:
    python: Path
    version: str
    # Seconds the pip install took in this run; None when an existing install was reused.
    install_seconds: float | None


def synapse_venv() -> Path:
    return Path(os.environ.get(VENV_ENV) or REPO_ROOT / ".venv-synapse")


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", "import synapse, psycopg2; print(synapse.__version__.split()[0])"],
        capture_output=True, text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_synapse(progress: Callable[[str], None] = print) -> SynapseInstall:
    """The Synapse virtualenv, made (python3 -m venv + pip install) when missing or broken.

    Several test runs on one machine may race here; a lock file serialises them.
    Raises RuntimeError with pip's output when the install fails (no network, ...).
    """
    venv = synapse_venv()
    python = venv / "bin" / "python"
    marker = venv / "installed-requirement.txt"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = _installed_version(python)
        if version is not None and marker.exists() and marker.read_text().strip() == SYNAPSE_REQUIREMENT:
            return SynapseInstall(python, version, None)
        progress(f"installing {SYNAPSE_REQUIREMENT} into {venv} (once per machine; takes a minute or so)")
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        log_path = venv.with_name(venv.name + "-install.log")
        with open(log_path, "w") as log:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                # Few retries and a bounded wait: without network this fails in minutes, not a quarter hour.
                [str(python), "-m", "pip", "install", "-q", "--retries", "2", "--timeout", "60",
                 SYNAPSE_REQUIREMENT, *EXTRA_REQUIREMENTS],
            ]
            for step in steps:
                log.write(f"$ {' '.join(step)}\n")
                log.flush()
                if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                    log.close()
                    tail = log_path.read_text()[-4000:]
                    raise RuntimeError(f"installing Synapse failed ({' '.join(step[:4])} ...):\n{tail}")
        version = _installed_version(python)
        if version is None:
            raise RuntimeError(f"Synapse was installed into {venv} but does not import; see {log_path}")
        marker.write_text(SYNAPSE_REQUIREMENT + "\n")
        seconds = time.monotonic() - started
        progress(f"installed Synapse {version} in {seconds:.0f} s")
        return SynapseInstall(python, version, seconds)


# --- the client API -------------------------------------------------------------------------


class SynapseUser(NamedTuple):
    user_id: str
    access_token: str


class SynapseError(Exception):
    """Synapse answered a client API call with an HTTP error."""

    def __init__(self, method: str, path: str, status: int, body: Any):
        self.status = status
        self.body = body
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{method} {path} -> {status}: {body}")


class SynapseClient:
    """A few calls to Synapse's Client-Server API as one user (aiohttp; use `async with`)."""

    def __init__(self, base_url: str, access_token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self._session: aiohttp.ClientSession | None = None
        self._txn = 0

    async def __aenter__(self) -> "SynapseClient":
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None,
                      query: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or None). `path` starts with /_matrix/..., segments already encoded."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        headers = {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}
        async with self._session.request(method, self.base_url + path, json=body, params=query,
                                         headers=headers) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = None
            return response.status, data

    async def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """The parsed JSON answer; raises SynapseError unless the status is 2xx."""
        status, data = await self.request(method, path, body, query)
        if not 200 <= status < 300:
            raise SynapseError(method, path, status, data)
        return data

    def _next_txn(self) -> str:
        self._txn += 1
        return f"t{time.time_ns()}.{self._txn}"

    async def create_room(self, **body: Any) -> str:
        return (await self.call("POST", "/_matrix/client/v3/createRoom", body))["room_id"]

    async def join(self, room_id_or_alias: str, via: list[str] | None = None) -> str:
        query = {"server_name": via} if via else None
        path = "/_matrix/client/v3/join/" + quote(room_id_or_alias, safe="")
        return (await self.call("POST", path, {}, query))["room_id"]

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.call("POST", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/invite", {"user_id": user_id})

    async def leave(self, room_id: str) -> None:
        await self.call("POST", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/leave", {})

    async def send(self, room_id: str, event_type: str, content: dict) -> str:
        path = (f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/"
                f"{quote(event_type, safe='')}/{self._next_txn()}")
        return (await self.call("PUT", path, content))["event_id"]

    async def send_text(self, room_id: str, text: str) -> str:
        return await self.send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})

    async def send_state(self, room_id: str, event_type: str, state_key: str, content: dict) -> str:
        path = (f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/"
                f"{quote(event_type, safe='')}/{quote(state_key, safe='')}")
        return (await self.call("PUT", path, content))["event_id"]

    async def state(self, room_id: str) -> list[dict]:
        return await self.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state")

    async def messages(self, room_id: str, direction: str = "b", limit: int = 50) -> dict:
        return await self.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages",
                               query={"dir": direction, "limit": str(limit)})

    async def sync(self, since: str | None = None, timeout_ms: int = 0) -> dict:
        query = {"timeout": str(timeout_ms)}
        if since:
            query["since"] = since
        return await self.call("GET", "/_matrix/client/v3/sync", query=query)

    async def sync_until(self, predicate: Callable[[dict], Any], timeout: float = 60) -> Any:
        """Long-polls /sync until predicate(response) is truthy and returns that value.

        The predicate sees each response in turn (the initial one first); raises
        TimeoutError with the last response when nothing matched within `timeout`.
        """
        deadline = time.monotonic() + timeout
        since = None
        last = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no /sync response matched within {timeout} s; last: {last}")
            last = await self.sync(since, timeout_ms=int(min(remaining, 10) * 1000) if since else 0)
            found = predicate(last)
            if found:
                return found
            since = last["next_batch"]


# --- the peer -------------------------------------------------------------------------------


def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def _psycopg2_args(dsn: str, database: str) -> dict[str, Any]:
    """Synapse's `database.args` (psycopg2 connect keywords) for a postgresql:// DSN."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    args: dict[str, Any] = {"database": database, "cp_min": 1, "cp_max": 5}
    host = query.pop("host", None) or parts.hostname
    if host:
        args["host"] = host
    if parts.port or "port" in query:
        args["port"] = int(query.pop("port", None) or parts.port)
    if parts.username or "user" in query:
        args["user"] = query.pop("user", None) or parts.username
    if parts.password:
        args["password"] = parts.password
    return args


_HIGH = {"per_second": 100_000, "burst_count": 1_000_000}


def _rate_limits() -> dict[str, Any]:
    """Every Synapse rate limit out of the way: tests send bursts from one address."""
    return {
        "rc_message": _HIGH,
        "rc_registration": _HIGH,
        "rc_registration_token_validity": _HIGH,
        "rc_login": {"address": _HIGH, "account": _HIGH, "failed_attempts": _HIGH},
        "rc_admin_redaction": _HIGH,
        "rc_joins": {"local": _HIGH, "remote": _HIGH},
        "rc_joins_per_room": _HIGH,
        "rc_3pid_validation": _HIGH,
        "rc_invites": {"per_room": _HIGH, "per_user": _HIGH, "per_issuer": _HIGH},
        "rc_third_party_invite": _HIGH,
        "rc_key_requests": _HIGH,
        "rc_media_create": _HIGH,
        "rc_presence": {"per_user": _HIGH},
        "rc_delayed_event_mgmt": _HIGH,
        "rc_room_creation": _HIGH,
        "rc_reports": _HIGH,
        "rc_user_directory": _HIGH,
        "rc_profile": _HIGH,
        # Inbound federation: never delay or reject a request from our server.
        "rc_federation": {"window_size": 1000, "sleep_limit": 100_000, "sleep_delay": 1,
                          "reject_limit": 1_000_000, "concurrent": 1000},
        "federation_rr_transactions_per_room_per_second": 100_000,
    }


class SynapsePeer:
    """One Synapse process on 127.0.0.1; restartable on the same data and database."""

    def __init__(self, directory: Path, admin_dsn: str, install: SynapseInstall, *,
                 log_level: str = "INFO", **config: Any):
        self.directory = directory
        self.admin_dsn = admin_dsn
        self.install = install
        self.tls_port = free_port()
        self.http_port = free_port()
        self.server_name = f"127.0.0.1:{self.tls_port}"
        self.database = f"synapse_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.shared_secret = secrets.token_hex(16)
        self.config_path = directory / "homeserver.yaml"
        self.log_path = directory / "homeserver.log"
        self.stdout_path = directory / "stdout.log"
        self.log_level = log_level
        self.extra_config = config
        self.process: subprocess.Popen | None = None
        self._prepared = False
        # Seconds the last start() took until /_matrix/client/versions answered.
        self.last_start_seconds: float | None = None

    @property
    def client_url(self) -> str:
        """The plain HTTP client listener, for the test's own calls."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def tls_url(self) -> str:
        """Where other servers reach it: client and federation over HTTPS (self-signed)."""
        return f"https://127.0.0.1:{self.tls_port}"

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def client(self, user: SynapseUser | str | None = None) -> SynapseClient:
        token = user.access_token if isinstance(user, SynapseUser) else user
        return SynapseClient(self.client_url, token)

    # configuration

    def _config(self) -> dict[str, Any]:
        cert = make_self_signed_certificate(self.directory)
        listener_resources = [{"names": ["client", "federation"], "compress": False}]
        raw: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(self.directory / "homeserver.pid"),
            "report_stats": False,
            "listeners": [
                {"port": self.tls_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
                 "x_forwarded": False, "resources": listener_resources},
                {"port": self.http_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                 "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]},
            ],
            "tls_certificate_path": str(cert.certificate),
            "tls_private_key_path": str(cert.private_key),
            "database": {"name": "psycopg2", "args": _psycopg2_args(self.admin_dsn, self.database)},
            "log_config": str(self.directory / "log.yaml"),
            "media_store_path": str(self.directory / "media_store"),
            "signing_key_path": str(self.directory / "signing.key"),
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "registration_shared_secret": self.shared_secret,
            "enable_registration": False,
            "presence": {"enabled": True},
            # Peers in the tests present self-signed certificates at 127.0.0.1.
            "federation_verify_certificates": False,
            "use_insecure_ssl_client_just_for_testing_do_not_use": True,
            "ip_range_blacklist": [],
            "ip_range_whitelist": ["127.0.0.1"],
            "federation_ip_range_blacklist": [],
            # No notary: keys are fetched from each server itself.
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "allow_public_rooms_over_federation": True,
            "url_preview_enabled": False,
            "enable_metrics": False,
            **_rate_limits(),
        }
        raw.update(self.extra_config)
        return raw

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                                                 " - %(request)s - %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                                  "filename": str(self.log_path), "encoding": "utf8"}},
            "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
            "root": {"level": self.log_level, "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    async def _prepare(self) -> None:
        """Directory, config, certificate, database and signing key: once per peer."""
        if self._prepared:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "log.yaml").write_text(yaml.safe_dump(self._log_config()))
        self.config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            # Synapse refuses a database whose collation is not C.
            await admin.execute(f'CREATE DATABASE "{self.database}" TEMPLATE template0'
                                " LC_COLLATE 'C' LC_CTYPE 'C' ENCODING 'UTF8'")
        finally:
            await admin.close()
        # Synapse's own generator writes the signing key, and checks the config on the way.
        result = await asyncio.to_thread(
            subprocess.run,
            [str(self.install.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path),
             "--generate-keys"],
            cwd=self.directory, capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"Synapse rejected its configuration {self.config_path}:\n"
                               f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
        self._prepared = True

    # process

    async def start(self, timeout: float = 120) -> None:
        await self._prepare()
        started = time.monotonic()
        stdout = open(self.stdout_path, "ab")
        self.process = subprocess.Popen(
            [str(self.install.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.directory, stdout=stdout, stderr=subprocess.STDOUT,
        )
        stdout.close()
        deadline = started + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if self.process.poll() is not None:
                    self.process = None
                    raise RuntimeError(f"Synapse exited while starting:\n{self.log_tail()}")
                if await self._answers(session, self.client_url) and await self._answers(session, self.tls_url):
                    self.last_start_seconds = time.monotonic() - started
                    return
                if time.monotonic() > deadline:
                    await self.stop()
                    raise RuntimeError(f"Synapse did not answer within {timeout} s:\n{self.log_tail()}")
                await asyncio.sleep(0.2)

    @staticmethod
    async def _answers(session: aiohttp.ClientSession, base_url: str) -> bool:
        try:
            async with session.get(base_url + "/_matrix/client/versions", ssl=False) as response:
                return response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        """Stop the process and drop its database; the directory (logs) stays."""
        await self.stop()
        if self._prepared:
            admin = await asyncpg.connect(self.admin_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await admin.close()
            self._prepared = False

    def log_tail(self, chars: int = 4000) -> str:
        parts = []
        for path in (self.stdout_path, self.log_path):
            if path.exists():
                parts.append(f"--- {path} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # users

    async def register(self, localpart: str, password: str = DEFAULT_PASSWORD, admin: bool = False) -> SynapseUser:
        """A new account through the shared-secret admin API (/_synapse/admin/v1/register).

        The nonce from GET is signed with HMAC-SHA1 over
        nonce NUL username NUL password NUL ("admin" | "notadmin").
        """
        async with self.client() as c:
            nonce = (await c.call("GET", "/_synapse/admin/v1/register"))["nonce"]
            mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
            mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                     b"admin" if admin else b"notadmin"]))
            body = {"nonce": nonce, "username": localpart, "password": password, "admin": admin,
                    "mac": mac.hexdigest()}
            answer = await c.call("POST", "/_synapse/admin/v1/register", body)
        return SynapseUser(answer["user_id"], answer["access_token"])

    async def login(self, localpart: str, password: str = DEFAULT_PASSWORD) -> SynapseUser:
        """A new device and access token for an existing account (m.login.password)."""
        async with self.client() as c:
            answer = await c.call("POST", "/_matrix/client/v3/login", {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            })
        return SynapseUser(answer["user_id"], answer["access_token"])
