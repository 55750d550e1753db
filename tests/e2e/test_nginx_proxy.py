"""The nginx configuration of docs/reverse-proxy.md, run by a real nginx in front of the real server.

The test reads the configuration out of the doc (the block after the marker comment) and
changes only what must differ on a test machine: listen addresses and ports, certificate
paths (a self-signed certificate made with openssl) and the upstream's port. So the doc and
what is tested cannot drift apart. nginx runs in the foreground with its own prefix, pid,
temporary and log files in the test's folder; the system's nginx service is never used.

How the machine gets nginx: Debian's `nginx-light` (or `nginx`) package. Where nginx is
missing and the test runs as root with apt-get (CI, a fresh box), it installs the package
itself, as .ci/run does. Where nginx can be neither found nor installed the test fails and
says so; it is never skipped.

The client connects from 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux) so that the
client's address and nginx's (127.0.0.1) differ: the device list must show the client's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from tests.debian_tools import debian_tool
from tests.e2e.server_process import ServerProcess, free_port
from tests.federation.tls_cert import make_self_signed_certificate

DOC = Path(__file__).resolve().parents[2] / "docs" / "reverse-proxy.md"
MARKER = "<!-- tests/e2e/test_nginx_proxy.py runs the next block"
HOMESERVER_HOST = "matrix.example.org"
SITE_HOST = "example.org"
CLIENT_ADDRESS = "127.0.0.2"


def documented_configuration() -> str:
    text = DOC.read_text()
    at = text.find(MARKER)
    assert at >= 0, f"{DOC} lost the marker comment before its nginx configuration"
    match = re.compile(r"```nginx\n(.*?)```", re.S).search(text, at)
    assert match is not None, f"no ```nginx block after the marker in {DOC}"
    return match.group(1)


def _substitute(config: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, config)
    assert count > 0, f"the doc's nginx configuration has no {pattern!r} any more: update the test with it"
    return new


def configuration_for_test(certificate: Path, key: Path, https_port: int, http_port: int, upstream_port: int) -> str:
    """The doc's block with the machine-specific values replaced, and nothing else."""
    config = documented_configuration()
    config = _substitute(config, r"listen \[::\]:(443 ssl|80);\n", "")
    config = _substitute(config, r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    config = _substitute(config, r"listen 80;", f"listen 127.0.0.1:{http_port};")
    config = _substitute(config, r"/etc/letsencrypt/live/[^/]+/fullchain\.pem", str(certificate))
    config = _substitute(config, r"/etc/letsencrypt/live/[^/]+/privkey\.pem", str(key))
    config = _substitute(config, r"http://127\.0\.0\.1:8008;", f"http://127.0.0.1:{upstream_port};")
    return config


class Nginx:
    """One nginx in the foreground (daemon off, no worker processes) with everything in `directory`."""

    def __init__(self, directory: Path, site: str):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "site.conf").write_text(site)
        mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
        (directory / "nginx.conf").write_text(f"""
master_process off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/site.conf;
}}
""")
        self.binary = debian_tool("nginx", "nginx-light", "nginx")
        self.process: subprocess.Popen | None = None

    def _command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.directory), "-c", str(self.directory / "nginx.conf"),
                "-e", str(self.directory / "error.log"), *extra]

    def start(self, port: int) -> None:
        check = subprocess.run(self._command("-t"), capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t refuses the doc's configuration:\n{check.stderr}"
        self.process = subprocess.Popen(self._command("-g", "daemon off;"),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen: {self.error_log()}")

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture
def stack(tmp_path, database_dsn):
    server = ServerProcess(tmp_path / "hs", database_dsn, trusted_proxies=["127.0.0.1", "::1"],
                           federation={"trusted_key_servers": []}, password_config={"minimum_length": 1})
    server.start()
    certificate = make_self_signed_certificate(tmp_path / "tls")
    https_port, http_port = free_port(), free_port()
    site = configuration_for_test(certificate.certificate, certificate.private_key, https_port, http_port, server.port)
    nginx = Nginx(tmp_path / "nginx", site)
    try:
        nginx.start(https_port)
        yield server, nginx, certificate.certificate, https_port, http_port
    finally:
        nginx.stop()
        server.stop()


class ProxiedClient:
    """HTTPS to nginx on 127.0.0.1 as `Host: matrix.example.org`, from 127.0.0.2, certificate checked."""

    def __init__(self, session: aiohttp.ClientSession, base: str, host: str = HOMESERVER_HOST):
        self.session = session
        self.base = base
        self.host = host
        self.token: str | None = None

    async def call(self, method: str, path: str, json_body=None, *, data: bytes | None = None,
                   headers: dict[str, str] | None = None, host: str | None = None) -> tuple[int, object, dict]:
        all_headers = {"Host": host or self.host, **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        async with self.session.request(method, self.base + path, json=json_body, data=data,
                                        headers=all_headers, allow_redirects=False) as resp:
            body = await resp.read()
            kind = resp.headers.get("Content-Type", "")
            parsed = json.loads(body) if kind.startswith("application/json") and body else body
            return resp.status, parsed, dict(resp.headers)

    async def register(self, name: str) -> str:
        status, body, _ = await self.call("POST", "/_matrix/client/v3/register", {
            "username": name, "password": "nginx-test-password", "auth": {"type": "m.login.dummy"}})
        assert status == 200, body
        self.token = body["access_token"]
        self.user_id = body["user_id"]
        self.device_id = body["device_id"]
        return self.user_id


async def test_a_client_session_and_federation_through_the_documented_nginx(stack):
    server, nginx, certificate, https_port, http_port = stack
    tls = ssl.create_default_context(cafile=str(certificate))
    # The certificate is for 127.0.0.1; the Host header names the documented site.
    connector = aiohttp.TCPConnector(ssl=tls, local_addr=(CLIENT_ADDRESS, 0))
    base = f"https://127.0.0.1:{https_port}"
    async with aiohttp.ClientSession(connector=connector) as session:
        alice, bob = ProxiedClient(session, base), ProxiedClient(session, base)
        await alice.register("alice")
        await bob.register("bob")

        # Discovery, answered by nginx itself (way A), with the CORS header Element needs.
        status, body, headers = await alice.call("GET", "/.well-known/matrix/client", host=SITE_HOST)
        assert status == 200 and body == {"m.homeserver": {"base_url": "https://matrix.example.org"}}
        assert headers["Access-Control-Allow-Origin"] == "*"
        status, body, _ = await alice.call("GET", "/.well-known/matrix/server", host=SITE_HOST)
        assert status == 200 and body == {"m.server": "matrix.example.org:443"}

        # Plain HTTP answers with the way to HTTPS.
        async with session.get(f"http://127.0.0.1:{http_port}/_matrix/client/versions",
                               headers={"Host": HOMESERVER_HOST}, allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == "https://matrix.example.org/_matrix/client/versions"

        # A room, a message, a sync.
        status, body, _ = await alice.call("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"})
        assert status == 200, body
        room_id = body["room_id"]
        assert (await bob.call("POST", f"/_matrix/client/v3/join/{room_id}", {}))[0] == 200
        status, body, _ = await alice.call("PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
                                           {"msgtype": "m.text", "body": "through nginx"})
        assert status == 200, body
        status, body, _ = await bob.call("GET", "/_matrix/client/v3/sync")
        assert status == 200
        timeline = body["rooms"]["join"][room_id]["timeline"]["events"]
        assert any(e["content"].get("body") == "through nginx" for e in timeline)

        # A long poll through nginx wakes when the other user sends.
        since = body["next_batch"]
        poll = asyncio.create_task(bob.call("GET", f"/_matrix/client/v3/sync?since={since}&timeout=30000"))
        await asyncio.sleep(0.5)
        assert not poll.done()
        await alice.call("PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t2",
                         {"msgtype": "m.text", "body": "wake up"})
        status, body, _ = await asyncio.wait_for(poll, 25)
        assert status == 200
        assert [e["content"]["body"] for e in body["rooms"]["join"][room_id]["timeline"]["events"]] == ["wake up"]

        # 5 MB of media up and down: above nginx's default body limit of 1 MiB.
        data = os.urandom(5 * 1024 * 1024)
        status, body, _ = await alice.call("POST", "/_matrix/media/v3/upload?filename=big.bin", data=data,
                                           headers={"Content-Type": "application/octet-stream"})
        assert status == 200, body
        media = body["content_uri"].removeprefix("mxc://")
        status, downloaded, _ = await bob.call("GET", f"/_matrix/client/v1/media/download/{media}")
        assert status == 200
        assert hashlib.sha256(downloaded).digest() == hashlib.sha256(data).digest()

        # Federation reaches the server through the same block.
        status, body, _ = await alice.call("GET", "/_matrix/federation/v1/version")
        assert status == 200 and body["server"]["name"]
        status, body, _ = await alice.call("GET", "/_matrix/key/v2/server")
        assert status == 200 and body["server_name"] == server.server_name and body["verify_keys"]

        # The device list shows the client's address, also when the client forges the header.
        status, body, _ = await alice.call("GET", f"/_matrix/client/v3/devices/{alice.device_id}",
                                           headers={"X-Forwarded-For": "203.0.113.66"})
        assert status == 200
        assert body["last_seen_ip"] == CLIENT_ADDRESS
    assert "[crit]" not in nginx.error_log() and "[emerg]" not in nginx.error_log()
