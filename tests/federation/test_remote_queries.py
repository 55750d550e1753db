"""Our clients' profile and alias questions about servers that cannot be reached.

Answers from a real peer are tested in tests/federation/test_synapse_features.py; here
the peer's address is refused by the federation IP policy (127.0.0.1 is not allowed by
default), so the ask fails before a connection, as an unreachable server does.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

V3 = "/_matrix/client/v3"
UNREACHABLE = "127.0.0.1:9"


async def test_profile_of_a_user_on_an_unreachable_server_is_502(api):
    alice = await api.register("alice")
    user_id = quote(f"@bob:{UNREACHABLE}", safe="")
    for path in (f"{V3}/profile/{user_id}", f"{V3}/profile/{user_id}/displayname"):
        r = await alice.get(path)
        assert (r.status, r.errcode) == (502, "M_UNKNOWN"), path


async def test_alias_on_an_unreachable_server_is_a_gateway_error(api):
    alice = await api.register("alice")
    r = await alice.get(f"{V3}/directory/room/{quote(f'#room:{UNREACHABLE}', safe='')}")
    assert r.status in (502, 504) and r.errcode == "M_UNKNOWN"


@pytest.mark.parametrize("config_overrides", [{"federation": {"enabled": False}}])
async def test_without_federation_other_servers_profiles_and_aliases_are_not_found(api):
    alice = await api.register("alice")
    r = await alice.get(f"{V3}/profile/{quote(f'@bob:{UNREACHABLE}', safe='')}")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await alice.get(f"{V3}/directory/room/{quote(f'#room:{UNREACHABLE}', safe='')}")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
