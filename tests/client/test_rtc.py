"""MatrixRTC (Element Call) focus discovery, MSC4143."""

from __future__ import annotations

import pytest

TRANSPORTS = "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports"
LIVEKIT = "https://livekit-jwt.test.local"


@pytest.mark.parametrize("config_overrides", [{
    "public_baseurl": "https://matrix.test.local/", "matrix_rtc": {"livekit_service_url": LIVEKIT},
}])
async def test_livekit_focus_advertised(api):
    focus = [{"type": "livekit", "livekit_service_url": LIVEKIT}]
    r = await api.request("GET", "/.well-known/matrix/client")
    assert r.status == 200
    assert r["org.matrix.msc4143.rtc_foci"] == focus
    assert r["m.homeserver"] == {"base_url": "https://matrix.test.local/"}
    alice = await api.register("alice")
    r = await alice.get(TRANSPORTS)
    assert r.status == 200 and r.body == {"rtc_transports": focus}
    r = await api.request("GET", TRANSPORTS)
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


@pytest.mark.parametrize("config_overrides", [{"public_baseurl": "https://matrix.test.local/"}])
async def test_no_focus_configured(api):
    r = await api.request("GET", "/.well-known/matrix/client")
    assert "org.matrix.msc4143.rtc_foci" not in r.body
    alice = await api.register("alice")
    assert (await alice.get(TRANSPORTS)).body == {"rtc_transports": []}


def test_config_refuses_a_non_http_url(tmp_path):
    from homeserver.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="matrix_rtc.livekit_service_url"):
        parse_config({"server_name": "test.local", "matrix_rtc": {"livekit_service_url": "wss://x"}})
    with pytest.raises(ConfigError, match="matrix_rtc"):
        parse_config({"server_name": "test.local", "matrix_rtc": {"unknown": 1}})
