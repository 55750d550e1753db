"""X-Forwarded-For is believed only from `trusted_proxies` (homeserver/http.py client_ip).

The in-process test server sees every request come from 127.0.0.1, as a reverse proxy on
the same machine would. The device list's last_seen_ip and the per-address login limit
show which address the server took.
"""

from __future__ import annotations

import pytest

LOGIN_LIMIT = {"login": {"per_second": 0.001, "burst": 2}, "registration": {"per_second": 1000, "burst": 1000}}


async def last_seen_ip(user, forwarded: str | None) -> str:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    # The device list request is a use of the device too: it comes the same way.
    device = await user.get(f"/_matrix/client/v3/devices/{user.device_id}", headers=headers)
    return device["last_seen_ip"]


async def test_without_trusted_proxies_a_forwarded_address_is_ignored(api):
    alice = await api.register("alice")
    assert await last_seen_ip(alice, "203.0.113.7") == "127.0.0.1"


@pytest.mark.parametrize("config_overrides", [{"trusted_proxies": ["10.0.0.0/8", "192.168.1.1"]}])
async def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(api):
    alice = await api.register("alice")
    assert await last_seen_ip(alice, "203.0.113.7") == "127.0.0.1"


@pytest.mark.parametrize("config_overrides", [{"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}])
async def test_behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client(api):
    alice = await api.register("alice")
    assert await last_seen_ip(alice, "203.0.113.7") == "203.0.113.7"
    # The client forged the left entry; the proxy appended what it saw.
    assert await last_seen_ip(alice, "198.51.100.1, 203.0.113.8") == "203.0.113.8"
    # Two proxies of ours in a row: the address before them.
    assert await last_seen_ip(alice, "203.0.113.9, 10.1.2.3") == "203.0.113.9"
    # Garbage the proxy passed on is not an address: the proxy is the best we know.
    assert await last_seen_ip(alice, "not-an-ip") == "127.0.0.1"
    assert await last_seen_ip(alice, None) == "127.0.0.1"


async def _login(api, forwarded: str) -> int:
    r = await api.request("POST", "/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "correct horse battery",
    }, headers={"X-Forwarded-For": forwarded})
    return r.status


@pytest.mark.parametrize("config_overrides", [{"rate_limits": LOGIN_LIMIT}])
async def test_a_forged_address_does_not_escape_the_login_limit(api):
    await api.register("alice")
    assert [await _login(api, f"203.0.113.{i}") for i in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("config_overrides", [{"rate_limits": LOGIN_LIMIT, "trusted_proxies": ["127.0.0.1"]}])
async def test_behind_a_trusted_proxy_each_client_has_its_own_login_limit(api):
    await api.register("alice")
    assert [await _login(api, "203.0.113.1") for _ in range(3)] == [200, 200, 429]
    # Another client behind the same proxy is not limited by the first one's attempts...
    assert await _login(api, "203.0.113.2") == 200
    # ...and the first cannot reset its bucket by prepending a made-up address.
    assert await _login(api, "198.51.100.99, 203.0.113.1") == 429
