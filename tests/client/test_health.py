"""GET /health: what the Docker HEALTHCHECK (docker/Dockerfile) and uptime monitors ask."""

from __future__ import annotations


async def test_health_answers_ok_without_a_token(api):
    resp = await api.client.get("/health")
    assert resp.status == 200
    assert await resp.text() == "OK"
    assert resp.headers["Content-Type"].startswith("text/plain")
    # A HEAD (curl -I, some probes) answers too; other methods are not a health check.
    assert (await api.client.head("/health")).status == 200
    assert (await api.client.post("/health")).status == 405
