"""A real coturn relays for the credentials the homeserver hands out, and refuses others.

How the machine gets coturn: the test needs Debian's `coturn` package, which
brings the `turnserver` daemon and coturn's own test client `turnutils_uclient`:

    sudo apt-get install -y coturn     # about 10 s, a 0.5 MB download

Where the binaries are missing and the test runs as root on a machine with
apt-get (a fresh Debian box, CI), it installs the package itself, so the
README's test command needs nothing else. The test never uses the system
service or /etc/turnserver.conf: it starts a `turnserver` of its own on
127.0.0.1 with a free port, `use-auth-secret` and a fresh
`static-auth-secret`, no TLS, and stops it afterwards. Where coturn can be
neither found nor installed, the test fails and says how to install it; it is
never skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import struct
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from homeserver.services.turn import ephemeral_credentials
from tests.debian_tools import debian_tool
from tests.e2e.server_process import ServerProcess

REALM = "e2e.local"


def _free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (turnserver listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def _answers_stun(port: int) -> bool:
    """Whether a STUN Binding request (RFC 5389) to the port gets a response."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.2)
        udp.sendto(request, ("127.0.0.1", port))
        try:
            response = udp.recv(2048)
        except OSError:
            return False
    return response[8:20] == transaction


class Coturn:
    def __init__(self, directory: Path, shared_secret: str):
        self.directory = directory
        self.shared_secret = shared_secret
        self.port = _free_udp_and_tcp_port()
        self.log_path = directory / "turnserver.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                debian_tool("turnserver", "coturn"), "-n", "--verbose",
                "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
                f"--listening-port={self.port}", "--alt-listening-port=0",
                "--use-auth-secret", f"--static-auth-secret={self.shared_secret}", f"--realm={REALM}",
                "--no-tls", "--no-dtls", "--no-cli",
                # Both test clients and their relays are on 127.0.0.1; a real
                # deployment denies loopback and private peers (docs/turn.md).
                "--allow-loopback-peers",
                f"--userdb={self.directory / 'turndb'}", f"--pidfile={self.directory / 'turnserver.pid'}",
                "--log-file=stdout", "--simple-log",
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited: {self.log_path.read_text()[-3000:]}")
            if _answers_stun(self.port):
                return
        raise RuntimeError(f"turnserver did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def relay(self, username: str, password: str) -> tuple[int, str]:
        """Two coturn test clients allocate relays with these credentials and talk through them."""
        process = await asyncio.create_subprocess_exec(
            # -y: the clients send to each other's relay address; -c: no RTCP pair; -n 1: one message each.
            debian_tool("turnutils_uclient", "coturn"), "-y", "-c", "-n", "1",
            "-p", str(self.port), "-u", username, "-w", password, "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode, output.decode(errors="replace")


@pytest.fixture
def coturn(tmp_path):
    # Look for the client before starting anything, so a half install fails clearly too.
    debian_tool("turnutils_uclient", "coturn")
    server = Coturn(tmp_path / "coturn", secrets.token_urlsafe(24))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def homeserver(tmp_path, database_dsn, coturn):
    process = ServerProcess(tmp_path / "hs", database_dsn, server_name=REALM, turn={
        "uris": [f"turn:127.0.0.1:{coturn.port}?transport=udp"],
        "shared_secret": coturn.shared_secret,
        "user_lifetime": "1h",
    })
    process.start()
    yield process
    process.stop()


async def _turn_credentials(session: aiohttp.ClientSession, base: str, name: str) -> dict:
    async with session.post(base + "/register", json={
        "username": name, "password": "a strong password", "auth": {"type": "m.login.dummy"},
    }) as resp:
        registered = json.loads(await resp.text())
        assert resp.status == 200, registered
    headers = {"Authorization": f"Bearer {registered['access_token']}"}
    async with session.get(base + "/voip/turnServer", headers=headers) as resp:
        body = json.loads(await resp.text())
        assert resp.status == 200, body
    return body


async def test_coturn_relays_with_homeserver_credentials_and_refuses_wrong_ones(coturn, homeserver):
    base = homeserver.base_url + "/_matrix/client/v3"
    async with aiohttp.ClientSession() as session:
        alice = await _turn_credentials(session, base, "alice")
        bob = await _turn_credentials(session, base, "bob")
    assert alice["uris"] == [f"turn:127.0.0.1:{coturn.port}?transport=udp"]
    assert alice["username"].endswith(":@alice:e2e.local") and alice["ttl"] == 3600

    status, output = await coturn.relay(alice["username"], alice["password"])
    assert status == 0, output
    assert "ERROR" not in output, output
    # Both clients' messages went out and came back through the relays.
    assert "tot_send_msgs=2, tot_recv_msgs=2" in output, output
    assert f"user <{alice['username']}>: incoming packet ALLOCATE processed, success" in coturn.log()

    # A wrong password, or Alice's password under Bob's username, gets no relay.
    for username, password in (
        (alice["username"], "not the password"),
        (bob["username"], alice["password"]),
        (alice["username"], bob["password"]),
    ):
        status, output = await coturn.relay(username, password)
        assert status != 0, output
        assert "Cannot complete Allocation" in output, output
    assert f"user <{bob['username']}>: incoming packet ALLOCATE processed, success" not in coturn.log()

    # coturn reads the first part of the username as the expiry: once it has
    # passed, even a correctly signed username is refused.
    expired, password = ephemeral_credentials(coturn.shared_secret, "@alice:e2e.local", int(time.time()) - 1)
    status, output = await coturn.relay(expired, password)
    assert status != 0 and "Cannot complete Allocation" in output, output
