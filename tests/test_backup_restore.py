"""docs/backup.md, run for real: a server process with users, a room, messages and an
upload is backed up as the document says (pg_dump, the media directory, the signing
key, the configuration), stopped and wiped, restored as the document says, and started
again; then everything is found again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import aiohttp
import asyncpg
import pytest

from tests.e2e.server_process import ServerProcess

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery 1"
PHOTO = os.urandom(200_000)

pytestmark = pytest.mark.skipif(shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
                                reason="pg_dump and pg_restore (PostgreSQL client) are not installed")


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


async def test_backup_wipe_restore_finds_everything(pg_admin_dsn: str, tmp_path: Path):
    name = f"hs_backup_{uuid.uuid4().hex[:8]}"
    dsn = _with_database(pg_admin_dsn, name)
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    server = ServerProcess(tmp_path / "server", dsn)
    data = tmp_path / "server" / "data"
    backup = tmp_path / "backup"
    backup.mkdir()
    try:
        server.start()
        async with aiohttp.ClientSession() as session:
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
            keys_before = await Client(session, server.base_url).ok("GET", "/_matrix/key/v2/server")

            # docs/backup.md steps 1 and 2: dump the database, copy media, key and configuration.
            _run("pg_dump", "-Fc", "-f", str(backup / "homeserver.dump"), dsn)
            if shutil.which("rsync"):
                _run("rsync", "-a", "--exclude=/tmp", f"{data / 'media'}/", f"{backup / 'media'}/")
            else:
                shutil.copytree(data / "media", backup / "media", ignore=shutil.ignore_patterns("tmp"))
            shutil.copy2(data / "signing.key", backup / "signing.key")
            shutil.copy2(server.config_path, backup / "homeserver.yaml")

            # The machine is lost: server stopped, database dropped, data directory gone.
            server.stop()
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            shutil.rmtree(data)
            server.config_path.unlink()

            # docs/backup.md step 4, external PostgreSQL: configuration, key and media
            # back in place, an empty database, pg_restore --no-owner, start.
            shutil.copy2(backup / "homeserver.yaml", server.config_path)
            data.mkdir(mode=0o700)
            shutil.copy2(backup / "signing.key", data / "signing.key")
            shutil.copytree(backup / "media", data / "media")
            await admin.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\'')
            _run("pg_restore", "--no-owner", "-d", dsn, str(backup / "homeserver.dump"))
            server.start()

            # Everything is there.
            anon = Client(session, server.base_url)
            keys_after = await anon.ok("GET", "/_matrix/key/v2/server")
            assert keys_after["server_name"] == keys_before["server_name"]
            assert keys_after["verify_keys"] == keys_before["verify_keys"]  # same key id, same public key
            assert len(keys_after["verify_keys"]) == 1
            login = await anon.ok("POST", f"{V3}/login", {
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                "password": PASSWORD})
            alice_again = Client(session, server.base_url, login["access_token"])
            page = await alice_again.ok("GET", f"{V3}/rooms/{room}/messages", params={"dir": "b", "limit": "50"})
            messages = [e for e in page["chunk"] if e["type"] == "m.room.message"]
            assert [e["event_id"] for e in reversed(messages)] == sent
            assert [e["content"]["body"] for e in reversed(messages)] == ["before the backup", "me too", "photo:"]
            status, body = await alice_again.call("GET", media_path)
            assert status == 200 and body == PHOTO
            # Bob's old token and sync position still work: the next sync brings what
            # happened since, and only that.
            await alice_again.ok("PUT", f"{V3}/rooms/{room}/send/m.room.message/after",
                                 {"msgtype": "m.text", "body": "after the restore"})
            synced = await bob.ok("GET", f"{V3}/sync", params={"timeout": "0", "since": since})
            timeline = synced["rooms"]["join"][room]["timeline"]["events"]
            assert [e["content"].get("body") for e in timeline] == ["after the restore"]
    finally:
        server.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
