"""Devices remember when and from where they were last used (Element's session list)."""

import pytest


async def test_last_seen_is_recorded_on_use(api):
    alice = await api.register("alice")
    before = await alice.get(f"/_matrix/client/v3/devices/{alice.device_id}")
    await alice.get("/_matrix/client/v3/account/whoami")
    after = await alice.get(f"/_matrix/client/v3/devices/{alice.device_id}")
    assert after.status == 200
    assert after["last_seen_ip"] == "127.0.0.1"
    assert after["last_seen_ts"] >= (before["last_seen_ts"] or 0)


@pytest.mark.parametrize("config_overrides", [{"registration": {"enabled": False}}])
async def test_username_availability_is_not_told_while_registration_is_closed(api):
    r = await api.request("GET", "/_matrix/client/v3/register/available", params={"username": "alice"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_a_device_seen_moments_ago_is_not_written_again_after_a_restart(api, services):
    from homeserver.services.accounts import LAST_SEEN_INTERVAL_MS
    from tests.helpers import watch_statements

    alice = await api.register("alice")
    await alice.get("/_matrix/client/v3/account/whoami")
    writes: list[str] = []
    watch_statements(services.db, lambda sql: writes.append(sql) if "last_seen_ip = " in sql else None)

    def restart() -> None:  # what a new process knows: nothing cached
        services.accounts._last_seen.clear()
        services.tokens._cache.clear()

    restart()
    await alice.get("/_matrix/client/v3/account/whoami")
    assert writes == []
    # Seen long enough ago, it is written again.
    stored = await services.db.fetchval(
        "UPDATE devices SET last_seen_ts = last_seen_ts - $2 WHERE user_id = $1 RETURNING last_seen_ts",
        alice.user_id, LAST_SEEN_INTERVAL_MS + 1)
    restart()
    await alice.get("/_matrix/client/v3/account/whoami")
    assert len(writes) == 1
    device = await alice.get(f"/_matrix/client/v3/devices/{alice.device_id}")
    assert device["last_seen_ts"] > stored
