"""Prometheus metrics (docs/metrics.md): a listener of their own, labels by route pattern."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import pytest
from aiohttp.test_utils import TestClient, TestServer

from homeserver.metrics import METRICS, metrics_app
from tests.e2e.server_process import ServerProcess, free_port

METRICS_ON = {"metrics": {"enabled": True, "host": "127.0.0.1", "port": 9000}}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus' text format, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


@pytest.fixture
async def scrape(api):
    client = TestClient(TestServer(metrics_app(api.client.app[METRICS])))
    await client.start_server()

    async def get() -> str:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()

    try:
        yield get
    finally:
        await client.close()


@pytest.mark.parametrize("config_overrides", [METRICS_ON])
async def test_requests_are_counted_by_route_pattern_method_and_status(api, scrape):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    for i in range(3):
        await alice.send_text(room_id, f"hello {i}")
    await alice.sync()
    text = await scrape()

    send = "/_matrix/client/{version}/rooms/{room_id}/send/{event_type}/{txn_id}"
    assert sample(text, "homeserver_http_requests_total", endpoint=send, method="PUT", status="200") == 3
    assert sample(text, "homeserver_http_request_duration_seconds_count", endpoint=send, method="PUT") == 3
    assert sample(text, "homeserver_http_requests_total", endpoint="/_matrix/client/{version}/sync",
                  method="GET", status="200") == 1
    # No user or room id in any label.
    assert alice.user_id not in text and room_id not in text
    # Three messages and the room's first events went through the persist step.
    assert sample(text, "homeserver_event_persist_duration_seconds_count") >= 3 + 5
    assert sample(text, "homeserver_db_pool_max") == api.services.config.database_pool_size
    assert sample(text, "homeserver_db_pool_size") >= 1
    assert sample(text, "homeserver_sync_waiters") is not None
    assert sample(text, "homeserver_cache_hits_total", cache="events") is not None
    assert sample(text, "homeserver_cache_misses_total", cache="access_tokens") >= 1
    assert sample(text, "homeserver_federation_queued_pdus") == 0
    assert sample(text, "homeserver_federation_send_failures_total") == 0


@pytest.mark.parametrize("config_overrides", [METRICS_ON])
async def test_errors_and_unknown_paths_keep_labels_bounded(api, scrape):
    alice = await api.register("alice")
    for i in range(20):
        r = await api.request("GET", f"/_matrix/client/v3/no/such/path/{i}")
        assert r.status == 404
    r = await alice.get("/_matrix/client/v3/rooms/!nowhere:test.local/state")
    assert r.status in (403, 404)
    text = await scrape()
    assert sample(text, "homeserver_http_requests_total", endpoint="unmatched", method="GET", status="404") == 20
    assert "no/such/path" not in text
    assert sample(text, "homeserver_http_requests_total",
                  endpoint="/_matrix/client/{version}/rooms/{room_id}/state", method="GET",
                  status=str(r.status)) == 1


@pytest.mark.parametrize("config_overrides", [METRICS_ON])
async def test_sync_waiters_and_media_bytes(api, scrape):
    alice = await api.register("alice")
    bob = await api.register("bob")
    since = (await alice.sync())["next_batch"]
    await bob.sync()
    assert sample(await scrape(), "homeserver_sync_waiters") <= 2
    waiting = asyncio.create_task(alice.sync(since=since, timeout=30_000))
    for _ in range(100):
        if api.services.notifier.waiting_users() == 1:
            break
        await asyncio.sleep(0.05)
    assert sample(await scrape(), "homeserver_sync_waiters") >= 1
    await alice.put("/_matrix/client/v3/user/" + alice.user_id + "/account_data/m.wake", {"x": 1})
    assert (await waiting).status == 200

    data = bytes(range(256)) * 40  # 10240 bytes
    r = await alice.post("/_matrix/media/v3/upload", raw=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    media = r["content_uri"].removeprefix("mxc://")
    async with api.client.get(f"/_matrix/client/v1/media/download/{media}",
                              headers={"Authorization": f"Bearer {alice.access_token}"}) as resp:
        assert resp.status == 200 and await resp.read() == data
    text = await scrape()
    assert sample(text, "homeserver_media_uploaded_bytes_total") == len(data)
    assert sample(text, "homeserver_media_downloaded_bytes_total") == len(data)


@pytest.mark.parametrize("config_overrides", [METRICS_ON])
async def test_the_matrix_listener_does_not_serve_metrics(api):
    assert (await api.request("GET", "/metrics")).status == 404


async def test_metrics_are_off_by_default(api):
    assert METRICS not in api.client.app
    assert (await api.request("GET", "/metrics")).status == 404


def test_the_server_process_serves_metrics_on_their_own_port(tmp_path, database_dsn):
    port = free_port()
    server = ServerProcess(tmp_path, database_dsn, metrics={"enabled": True, "host": "127.0.0.1", "port": port})
    server.start()
    try:
        with urllib.request.urlopen(server.base_url + "/health", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert sample(text, "homeserver_http_requests_total", endpoint="/health", method="GET", status="200") >= 1
        try:
            urllib.request.urlopen(server.base_url + "/metrics", timeout=5)
            raise AssertionError("the Matrix listener served /metrics")
        except urllib.error.HTTPError as e:
            assert e.code == 404
    finally:
        server.stop()
