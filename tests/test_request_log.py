"""One access log line per request (homeserver/http.py matrix_middleware, logger homeserver.access),
with a request id, method, path, status, duration, client address and user: never a secret."""

from __future__ import annotations

import json
import logging
import re
import urllib.request

import pytest
from yarl import URL

from tests.e2e.server_process import ServerProcess

LINE = re.compile(
    r"(?P<id>[0-9a-f]{12}) (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>[0-9.]+)ms"
    r" client=(?P<client>\S+) user=(?P<user>\S+)"
)


def access_lines(caplog) -> list[re.Match]:
    return [LINE.fullmatch(r.getMessage()) for r in caplog.records if r.name == "homeserver.access"]


@pytest.fixture
def everything_logged(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_one_line_per_request_with_id_route_status_user_and_client(api, everything_logged):
    alice = await api.register("alice")
    everything_logged.clear()
    r = await api.request("GET", "/_matrix/client/v3/account/whoami", token=alice.access_token)
    assert r.status == 200
    (line,) = access_lines(everything_logged)
    assert line is not None
    assert line["id"] == r.headers["X-Request-Id"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/_matrix/client/v3/account/whoami", "200")
    assert line["client"] == "127.0.0.1" and line["user"] == alice.user_id

    everything_logged.clear()
    r = await api.request("GET", "/_matrix/client/v3/no/such/thing")
    (line,) = access_lines(everything_logged)
    assert (line["status"], line["user"]) == ("404", "-")
    assert line["id"] == r.headers["X-Request-Id"]


async def test_no_access_token_password_or_message_body_reaches_the_log(api, everything_logged):
    password = "Password-That-Must-Not-Leak-1"
    alice = await api.register("alice", password=password)
    login = await api.login("alice", password=password)
    assert login.status == 200
    token = login["access_token"]
    # The deprecated query parameter: the path is logged, the token is not.
    r = await api.request("GET", f"/_matrix/client/v3/account/whoami?access_token={token}&x=1")
    assert r.status == 200 and r["user_id"] == alice.user_id
    r = await api.request("GET", "/_matrix/client/v3/account/whoami?access_token=not-a-real-secret-token")
    assert r.status == 401
    # The name percent-encoded: the server still reads it as the token, the log still hides it.
    encoded = URL(f"{str(api.client.make_url('')).rstrip('/')}/_matrix/client/v3/account/whoami?access%5Ftoken={token}",
                  encoded=True)
    async with api.client.session.get(encoded) as resp:
        assert resp.status == 200 and (await resp.json())["user_id"] == alice.user_id
    room_id = await alice.create_room()
    await alice.send_text(room_id, "a private message body that stays out of logs")
    # A wrong password too: failures log no more than successes.
    assert (await api.login("alice", password="Wrong-Password-Also-Secret-2")).status == 403

    # aiohttp's own access log is the test server's; `homeserver run` turns it off
    # (access_log=None), as the process test below checks.
    text = "\n".join(r.getMessage() for r in everything_logged.records if r.name != "aiohttp.access")
    for secret in (password, token, alice.access_token, "not-a-real-secret-token",
                   "Wrong-Password-Also-Secret-2", "a private message body"):
        assert secret not in text
    paths = [line["path"] for line in access_lines(everything_logged) if line is not None]
    assert "/_matrix/client/v3/account/whoami?access_token=<redacted>&x=1" in paths
    assert "/_matrix/client/v3/account/whoami?access%5Ftoken=<redacted>" in paths
    assert "/_matrix/client/v3/login" in paths


def _call(server: ServerProcess, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(server.base_url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_server_process_log_has_the_lines_and_no_secrets(tmp_path, database_dsn):
    password = "Process-Password-Secret-3"
    server = ServerProcess(tmp_path, database_dsn, log_level="INFO", password_config={"minimum_length": 1})
    server.start()
    try:
        registered = _call(server, "POST", "/_matrix/client/v3/register",
                           {"username": "bob", "password": password, "auth": {"type": "m.login.dummy"}})
        token = registered["access_token"]
        assert _call(server, "GET", f"/_matrix/client/v3/account/whoami?access_token={token}")["user_id"] \
            == registered["user_id"]
        login = _call(server, "POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": password})
    finally:
        server.stop()
    log = server.log_path.read_text()
    for secret in (password, token, login["access_token"]):
        assert secret not in log
    assert re.search(r"homeserver\.access: [0-9a-f]{12} GET /_matrix/client/v3/account/whoami"
                     r"\?access_token=<redacted> 200 [0-9.]+ms client=127\.0\.0\.1 user=@bob:", log)
    assert re.search(r"homeserver\.access: [0-9a-f]{12} POST /_matrix/client/v3/login 200 ", log)
