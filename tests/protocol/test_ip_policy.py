"""The outbound address policy: public addresses pass, non-public ones only when allowed."""

import ipaddress

import pytest

from homeserver.protocol.ip_policy import AddressPolicy, parse_address


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::", "::7f00:1"],
)
def test_non_public_addresses_are_refused(address):
    assert not AddressPolicy().is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert AddressPolicy().is_allowed(ipaddress.ip_address(address))


def test_allow_list_and_deny_list():
    policy = AddressPolicy(
        allowed=["127.0.0.1/32", "10.0.0.0/8"], extra_denied=["10.9.0.0/16", "1.1.1.0/24"]
    )
    assert policy.is_allowed(ipaddress.ip_address("127.0.0.1"))
    assert not policy.is_allowed(ipaddress.ip_address("127.0.0.2"))
    assert policy.is_allowed(ipaddress.ip_address("10.1.0.1"))
    # The deny list wins over the allow list, and applies to public addresses too.
    assert not policy.is_allowed(ipaddress.ip_address("10.9.0.1"))
    assert not policy.is_allowed(ipaddress.ip_address("1.1.1.1"))
    # Allowing the IPv4 form does not allow its IPv6 spellings.
    assert not policy.is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))


def test_parse_address():
    assert parse_address("[::1]") == ipaddress.ip_address("::1")
    assert parse_address("1.2.3.4") == ipaddress.ip_address("1.2.3.4")
    assert parse_address("example.org") is None
    assert parse_address("[example.org]") is None
