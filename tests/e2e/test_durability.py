"""Everything the server acknowledged survives `kill -9` and a restart."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.e2e.server_process import ServerProcess


async def _call(session: aiohttp.ClientSession, method: str, url: str, token: str | None = None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers) as resp:
        return resp.status, json.loads(await resp.text())


async def _send_then_kill_then_check(server: ServerProcess) -> None:
    base = server.base_url + "/_matrix/client/v3"
    async with aiohttp.ClientSession() as session:
        status, reg = await _call(session, "POST", base + "/register", body={
            "username": "keeper", "password": "a strong password", "auth": {"type": "m.login.dummy"}})
        assert status == 200, reg
        token = reg["access_token"]
        status, created = await _call(session, "POST", base + "/createRoom", token, {"name": "Durable"})
        assert status == 200, created
        room_id = created["room_id"]

        acknowledged: dict[str, str] = {}

        async def send(i: int) -> None:
            status, body = await _call(
                session, "PUT", f"{base}/rooms/{room_id}/send/m.room.message/txn{i}", token,
                {"msgtype": "m.text", "body": f"message {i}"},
            )
            if status == 200:
                acknowledged[body["event_id"]] = f"message {i}"

        # Kill while sends are in flight: whatever was acknowledged must survive.
        tasks = [asyncio.create_task(send(i)) for i in range(60)]
        while len(acknowledged) < 30:
            await asyncio.sleep(0.005)
        server.kill()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(acknowledged) >= 30

    server.start()
    async with aiohttp.ClientSession() as session:
        # The access token itself was acknowledged too.
        found: dict[str, str] = {}
        status, page = await _call(session, "GET", f"{base}/rooms/{room_id}/messages?dir=b&limit=1000", token)
        assert status == 200, page
        for event in page["chunk"]:
            if event["type"] == "m.room.message":
                found[event["event_id"]] = event["content"]["body"]
        missing = set(acknowledged) - set(found)
        assert not missing, f"{len(missing)} acknowledged messages lost"
        for event_id, body in acknowledged.items():
            assert found[event_id] == body
        # The room keeps working after the crash.
        status, body = await _call(
            session, "PUT", f"{base}/rooms/{room_id}/send/m.room.message/after", token,
            {"msgtype": "m.text", "body": "after the crash"},
        )
        assert status == 200, body


async def test_acknowledged_sends_survive_kill_9(tmp_path, database_dsn):
    server = ServerProcess(tmp_path / "hs", database_dsn)
    server.start()
    try:
        await _send_then_kill_then_check(server)
    finally:
        server.stop()


async def test_acknowledged_sends_survive_kill_9_with_embedded_postgres(tmp_path):
    server = ServerProcess(tmp_path / "hs", database_dsn=None)
    server.start(timeout=120)
    try:
        await _send_then_kill_then_check(server)
    finally:
        server.stop()
