"""Server ACL matching, in the order the spec numbers its checks (m.room.server_acl)."""

from __future__ import annotations

import pytest

from homeserver.protocol.server_acl import server_allowed


def test_no_acl_allows_everyone():  # 1
    assert server_allowed(None, "anything.example")


@pytest.mark.parametrize("server", ["1.2.3.4", "1.2.3.4:8448", "[::1]", "[2001:db8::1]:443"])
def test_ip_literals_denied_only_when_asked(server):  # 2
    assert not server_allowed({"allow": ["*"], "allow_ip_literals": False}, server)
    assert server_allowed({"allow": ["*"]}, server)
    # Not a boolean: the default (true).
    assert server_allowed({"allow": ["*"], "allow_ip_literals": "no"}, server)


def test_deny_wins_over_allow():  # 3
    acl = {"allow": ["*"], "deny": ["evil.com", "*.evil.com"]}
    assert not server_allowed(acl, "evil.com")
    assert not server_allowed(acl, "evil.com:8448")  # ports are never considered
    assert not server_allowed(acl, "sub.evil.com")
    assert not server_allowed(acl, "EVIL.com")  # case-insensitive, as Synapse
    assert server_allowed(acl, "notevil.com")


def test_allow_list_and_the_default_deny():  # 4, 5
    acl = {"allow": ["*.example", "good.?rg"]}
    assert server_allowed(acl, "a.example")
    assert server_allowed(acl, "good.org")
    assert not server_allowed(acl, "good.oorg")
    assert not server_allowed(acl, "example")
    # No allow list at all denies every server.
    assert not server_allowed({"deny": []}, "a.example")
    assert not server_allowed({}, "a.example")


def test_malformed_entries_match_nothing():
    assert not server_allowed({"allow": "*"}, "a.example")
    assert server_allowed({"allow": ["*"], "deny": [5, None, {"x": 1}]}, "a.example")
