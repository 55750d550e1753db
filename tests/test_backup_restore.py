"""docs/backup.md, run for real: a server process with users, a room, messages and an
upload is backed up as the document says (pg_dump, the media directory, the signing
key, the configuration), stopped and wiped, restored as the document says, and started
again; then everything is found again. Once with the test PostgreSQL as an external
database, once with the embedded PostgreSQL (its own pg_dump, through its socket)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import aiohttp
import asyncpg

import pgserver
from pgserver.utils import ensure_prefix_permissions

from tests.debian_tools import debian_tool
from tests.e2e.server_process import ServerProcess

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery 1"
PHOTO = os.urandom(200_000)

def _with_database(dsn: str, name: str) -> str:
    return urlunparse(urlparse(dsn)._replace(path="/" + name))


class Client:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None):
        self.session = session
        self.base_url = base_url
        self.token = token
        self.user_id: str | None = None

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   headers: dict[str, str] | None = None, params: dict[str, str] | None = None):
        all_headers = dict(headers or {})
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.session.request(method, self.base_url + path, data=data, headers=all_headers,
                                        params=params) as resp:
            content = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, json.loads(content)
            return resp.status, content

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, answer = await self.call(method, path, body, **kw)
        assert status == 200, (path, status, answer)
        return answer


async def _register(session, base_url: str, name: str) -> Client:
    answer = await Client(session, base_url).ok("POST", f"{V3}/register", {
        "username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
    client = Client(session, base_url, answer["access_token"])
    client.user_id = answer["user_id"]
    return client


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)


@dataclasses.dataclass
class Before:
    """What the server held when it was backed up."""

    room: str
    sent: list[str]
    media_path: str
    bob: Client
    since: str
    keys: dict[str, Any]


async def _populate(session: aiohttp.ClientSession, server: ServerProcess) -> Before:
    alice = await _register(session, server.base_url, "alice")
    bob = await _register(session, server.base_url, "bob")
    room = (await alice.ok("POST", f"{V3}/createRoom", {"name": "Family", "invite": [bob.user_id]}))["room_id"]
    await bob.ok("POST", f"{V3}/join/{room}", {})
    sent = []
    for i, (who, text) in enumerate([(alice, "before the backup"), (bob, "me too"), (alice, "photo:")]):
        answer = await who.ok("PUT", f"{V3}/rooms/{room}/send/m.room.message/t{i}",
                              {"msgtype": "m.text", "body": text})
        sent.append(answer["event_id"])
    upload = await alice.ok("POST", "/_matrix/media/v3/upload", raw=PHOTO,
                            headers={"Content-Type": "image/jpeg"}, params={"filename": "p.jpg"})
    media_path = "/_matrix/client/v1/media/download/" + upload["content_uri"].removeprefix("mxc://")
    since = (await bob.ok("GET", f"{V3}/sync", params={"timeout": "0"}))["next_batch"]
    keys = await Client(session, server.base_url).ok("GET", "/_matrix/key/v2/server")
    return Before(room, sent, media_path, bob, since, keys)


def _back_up_files(server: ServerProcess, backup: Path) -> None:
    """docs/backup.md step 2: media (rsync -a --exclude=/tmp), signing key, configuration."""
    data = server.directory / "data"
    if shutil.which("rsync"):
        _run("rsync", "-a", "--exclude=/tmp", f"{data / 'media'}/", f"{backup / 'media'}/")
    else:
        shutil.copytree(data / "media", backup / "media", ignore=shutil.ignore_patterns("tmp"))
    shutil.copy2(data / "signing.key", backup / "signing.key")
    shutil.copy2(server.config_path, backup / "homeserver.yaml")


def _wipe(server: ServerProcess) -> None:
    shutil.rmtree(server.directory / "data")
    server.config_path.unlink()


def _restore_files(server: ServerProcess, backup: Path) -> None:
    """docs/backup.md step 4.1 and 4.2: configuration, signing key, media back in place."""
    data = server.directory / "data"
    shutil.copy2(backup / "homeserver.yaml", server.config_path)
    data.mkdir(mode=0o700)
    shutil.copy2(backup / "signing.key", data / "signing.key")
    shutil.copytree(backup / "media", data / "media")


async def _check_everything(session: aiohttp.ClientSession, server: ServerProcess, before: Before) -> None:
    anon = Client(session, server.base_url)
    keys = await anon.ok("GET", "/_matrix/key/v2/server")
    assert keys["server_name"] == before.keys["server_name"]
    assert keys["verify_keys"] == before.keys["verify_keys"]  # same key id, same public key
    assert len(keys["verify_keys"]) == 1
    login = await anon.ok("POST", f"{V3}/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD})
    alice = Client(session, server.base_url, login["access_token"])
    page = await alice.ok("GET", f"{V3}/rooms/{before.room}/messages", params={"dir": "b", "limit": "50"})
    messages = [e for e in page["chunk"] if e["type"] == "m.room.message"]
    assert [e["event_id"] for e in reversed(messages)] == before.sent
    assert [e["content"]["body"] for e in reversed(messages)] == ["before the backup", "me too", "photo:"]
    status, body = await alice.call("GET", before.media_path)
    assert status == 200 and body == PHOTO
    # Bob's old token and sync position still work: the next sync brings what happened
    # since, and only that.
    await alice.ok("PUT", f"{V3}/rooms/{before.room}/send/m.room.message/after",
                   {"msgtype": "m.text", "body": "after the restore"})
    bob = Client(session, server.base_url, before.bob.token)
    synced = await bob.ok("GET", f"{V3}/sync", params={"timeout": "0", "since": before.since})
    timeline = synced["rooms"]["join"][before.room]["timeline"]["events"]
    assert [e["content"].get("body") for e in timeline] == ["after the restore"]


async def test_external_database_backup_wipe_restore(pg_admin_dsn: str, tmp_path: Path):
    name = f"hs_backup_{uuid.uuid4().hex[:8]}"
    dsn = _with_database(pg_admin_dsn, name)
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    server = ServerProcess(tmp_path / "server", dsn)
    backup = tmp_path / "backup"
    backup.mkdir()
    try:
        server.start()
        async with aiohttp.ClientSession() as session:
            before = await _populate(session, server)
            # docs/backup.md steps 1 and 2: pg_dump with the server's DSN, then the files.
            _run(debian_tool("pg_dump", "postgresql-client"), "-Fc", "-f", str(backup / "homeserver.dump"), dsn)
            _back_up_files(server, backup)

            # The machine is lost: server stopped, database dropped, data directory gone.
            server.stop()
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            _wipe(server)

            # Step 4, external PostgreSQL: files back, an empty database, pg_restore --no-owner.
            _restore_files(server, backup)
            await admin.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\'')
            _run(debian_tool("pg_restore", "postgresql-client"), "--no-owner", "-d", dsn, str(backup / "homeserver.dump"))
            server.start()
            await _check_everything(session, server, before)
    finally:
        server.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _as_postgres_owner(*argv: str) -> tuple[str, ...]:
    """The commands the document runs with `sudo -u homeserver`: as this user, or, when the
    tests run as root, as the `pgserver` user pgserver runs PostgreSQL as then."""
    if os.geteuid() == 0:
        return ("runuser", "-u", "pgserver", "--", *argv)
    return argv


async def test_embedded_database_backup_wipe_restore():
    # Not under pytest's tmp_path: every pytest run (other sessions too) makes its root
    # private again (0700), which would lock the pgserver user (tests as root) out.
    tmp_path = Path(tempfile.mkdtemp(prefix="hs-backup-test-"))
    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    server = ServerProcess(tmp_path / "server", None)  # no database: the embedded PostgreSQL
    postgres_dir = server.directory / "data" / "postgres"
    backup = tmp_path / "backup"
    backup.mkdir()
    try:
        server.start(timeout=120)
        async with aiohttp.ClientSession() as session:
            before = await _populate(session, server)
            # Step 1, embedded: its own pg_dump, through the socket in data_dir/postgres,
            # while the server runs.
            socket_dir = (postgres_dir / "postmaster.pid").read_text().splitlines()[4]
            assert socket_dir == str(postgres_dir)
            _run(str(bin_dir / "pg_dump"), "-h", socket_dir, "-U", "postgres", "-Fc",
                 "-f", str(backup / "homeserver.dump"), "postgres")
            _back_up_files(server, backup)

            server.stop()
            _wipe(server)

            # Step 4, embedded: initdb as pgserver does, start with the socket there,
            # pg_restore, stop; then start the homeserver on it.
            _restore_files(server, backup)
            if os.geteuid() == 0:
                # As root, pgserver gives PostgreSQL's directory to its pgserver user and
                # opens the path to it (the parents were opened at the first start).
                postgres_dir.mkdir(mode=0o700)
                ensure_prefix_permissions(postgres_dir)
                shutil.chown(postgres_dir, "pgserver", "pgserver")
                (backup / "homeserver.dump").chmod(0o644)
                backup.chmod(0o755)
            _run(*_as_postgres_owner(str(bin_dir / "initdb"), "-D", str(postgres_dir), "-U", "postgres",
                                     "--auth=trust", "--encoding=utf8"))
            _run(*_as_postgres_owner(str(bin_dir / "pg_ctl"), "-D", str(postgres_dir),
                                     "-l", str(postgres_dir / "log"), "-o", f"-h '' -k {postgres_dir}",
                                     "-w", "start"))
            _run(*_as_postgres_owner(str(bin_dir / "pg_restore"), "-h", str(postgres_dir), "-U", "postgres",
                                     "-d", "postgres", "--no-owner", str(backup / "homeserver.dump")))
            _run(*_as_postgres_owner(str(bin_dir / "pg_ctl"), "-D", str(postgres_dir), "-w", "stop"))
            server.start(timeout=120)
            await _check_everything(session, server, before)
    finally:
        server.stop()
        if (postgres_dir / "postmaster.pid").exists():  # a failure between pg_ctl start and stop
            subprocess.run(_as_postgres_owner(str(bin_dir / "pg_ctl"), "-D", str(postgres_dir), "-m", "fast",
                                              "-w", "stop"), capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)
