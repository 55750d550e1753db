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
