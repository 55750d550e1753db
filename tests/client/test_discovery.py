"""Server discovery: /versions, /.well-known/matrix/{client,server}, /capabilities.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-discovery
and https://spec.matrix.org/v1.19/client-server-api/#capabilities-negotiation
"""

from __future__ import annotations

import re

import pytest

from homeserver.protocol.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS

CONFIGURED = {
    "public_baseurl": "https://matrix.test.local/",
    "well_known": {"server": "matrix.test.local:443"},
}


async def test_versions_and_unconfigured_well_known(api):
    r = await api.request("GET", "/_matrix/client/versions")
    assert r.status == 200
    versions = r["versions"]
    assert versions and all(re.fullmatch(r"r0\.\d+\.\d+|v1\.\d+", v) for v in versions)
    assert "v1.19" in versions
    assert all(isinstance(v, bool) for v in r.body.get("unstable_features", {}).values())
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    # An access token is optional: a valid one changes nothing.
    alice = await api.register("alice")
    assert (await alice.get("/_matrix/client/versions")).body == r.body

    # Without configuration there is nothing to announce.
    for path in ("/.well-known/matrix/client", "/.well-known/matrix/server"):
        r = await api.request("GET", path)
        assert r.status == 404, path
        assert r.errcode == "M_NOT_FOUND"


@pytest.mark.parametrize("config_overrides", [CONFIGURED])
async def test_well_known_configured(api):
    r = await api.request("GET", "/.well-known/matrix/client")
    assert r.status == 200
    assert r.body == {"m.homeserver": {"base_url": "https://matrix.test.local/"}}
    assert r.headers["Content-Type"].startswith("application/json")
    # Browsers fetch it cross-origin: the spec asks for CORS headers.
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    r = await api.request("GET", "/.well-known/matrix/server")
    assert r.status == 200
    assert r.body == {"m.server": "matrix.test.local:443"}


@pytest.mark.parametrize("config_overrides", [{
    "public_baseurl": "https://public.test.local/",
    "well_known": {"client_base_url": "https://client.test.local/"},
}])
async def test_well_known_client_base_url_overrides_public_baseurl(api):
    r = await api.request("GET", "/.well-known/matrix/client")
    assert r.body == {"m.homeserver": {"base_url": "https://client.test.local/"}}


async def test_capabilities(api):
    r = await api.request("GET", "/_matrix/client/v3/capabilities")
    assert r.status == 401
    assert r.errcode == "M_MISSING_TOKEN"

    alice = await api.register("alice")
    r = await alice.get("/_matrix/client/v3/capabilities")
    assert r.status == 200
    caps = r["capabilities"]
    assert caps["m.change_password"] == {"enabled": True}
    versions = caps["m.room_versions"]
    assert versions["default"] == DEFAULT_ROOM_VERSION.identifier
    assert versions["available"][versions["default"]] == "stable"
    assert set(versions["available"]) == set(KNOWN_ROOM_VERSIONS)
    assert set(versions["available"].values()) <= {"stable", "unstable"}
    for name in ("m.set_displayname", "m.set_avatar_url", "m.3pid_changes", "m.profile_fields"):
        if name in caps:
            assert isinstance(caps[name]["enabled"], bool), name
    assert caps.get("m.3pid_changes", {"enabled": False})["enabled"] is False

