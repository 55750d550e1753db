"""Server name resolution, each step of the spec's "Resolving server names", with
a fake DNS and a fake /.well-known (plain objects answering from dicts)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random

import pytest

from federation.discovery import (
    DiscoveryError,
    DnsError,
    ResolvedServer,
    ServerResolver,
    SrvAnswer,
    SrvRecord,
    SystemDns,
    WellKnownResponse,
    order_srv_records,
    well_known_ttl,
)

HOUR = 3600.0


class FakeDns:
    def __init__(self, srv=None, addresses=None):
        self.srv_records: dict[str, object] = srv or {}
        self.address_records: dict[str, list[str]] = addresses or {}
        self.srv_queries: list[str] = []

    async def srv(self, name):
        self.srv_queries.append(name)
        answer = self.srv_records.get(name)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            return SrvAnswer((), 600)
        return SrvAnswer(tuple(SrvRecord(*r) for r in answer), 300)

    async def addresses(self, host):
        if host not in self.address_records:
            raise DnsError(f"NXDOMAIN {host}")
        return self.address_records[host]


class FakeWellKnown:
    """Answers /.well-known requests from a dict: hostname -> response or exception."""

    def __init__(self, answers=None):
        self.answers: dict[str, object] = answers or {}
        self.requests: list[str] = []

    async def __call__(self, hostname):
        self.requests.append(hostname)
        await asyncio.sleep(0)
        answer = self.answers.get(hostname)
        if answer is None:
            return WellKnownResponse(404, {}, b'{"errcode":"M_NOT_FOUND"}')
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(server, headers=None):
    return WellKnownResponse(200, headers or {}, json.dumps({"m.server": server}).encode())


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make(dns=None, well_known=None, clock=None):
    return ServerResolver(
        dns or FakeDns(), well_known if well_known is not None else FakeWellKnown(),
        clock=clock or Clock(), wall_clock=lambda: 1_700_000_000.0, rng=random.Random(1),
    )


# --- Step 1: IP literals -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("1.2.3.4", ResolvedServer("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4")),
        ("1.2.3.4:1234", ResolvedServer("1.2.3.4", 1234, "1.2.3.4", "1.2.3.4:1234")),
        ("[2001:db8::1]", ResolvedServer("2001:db8::1", 8448, "2001:db8::1", "[2001:db8::1]")),
        ("[2001:db8::1]:99", ResolvedServer("2001:db8::1", 99, "2001:db8::1", "[2001:db8::1]:99")),
    ],
)
async def test_ip_literal(name, expected):
    dns, well_known = FakeDns(), FakeWellKnown()
    assert await make(dns, well_known).resolve_server(name) == expected
    assert dns.srv_queries == [] and well_known.requests == []


# --- Step 2: host name with a port ---------------------------------------------------


async def test_hostname_with_port_skips_well_known_and_srv():
    dns = FakeDns(srv={"_matrix-fed._tcp.example.org": [("other.org", 1, 0, 0)]})
    well_known = FakeWellKnown({"example.org": ok("elsewhere.org")})
    resolved = await make(dns, well_known).resolve_server("example.org:8000")
    assert resolved == ResolvedServer("example.org", 8000, "example.org", "example.org:8000")
    assert dns.srv_queries == [] and well_known.requests == []


# --- Step 3: delegation through /.well-known ------------------------------------------


@pytest.mark.parametrize(
    "delegated, expected",
    [
        # 3.1: IP literal, Host is the IP with the port if given
        ("5.6.7.8", ResolvedServer("5.6.7.8", 8448, "5.6.7.8", "5.6.7.8")),
        ("5.6.7.8:9000", ResolvedServer("5.6.7.8", 9000, "5.6.7.8", "5.6.7.8:9000")),
        ("[2001:db8::2]:9000", ResolvedServer("2001:db8::2", 9000, "2001:db8::2", "[2001:db8::2]:9000")),
        # 3.2: host name and port
        ("matrix.example.net:443", ResolvedServer("matrix.example.net", 443, "matrix.example.net",
                                                   "matrix.example.net:443")),
        # 3.5: no SRV record for the delegated name: 8448
        ("matrix.example.net", ResolvedServer("matrix.example.net", 8448, "matrix.example.net",
                                              "matrix.example.net")),
    ],
)
async def test_well_known_delegation(delegated, expected):
    dns = FakeDns(srv={"_matrix-fed._tcp.example.org": [("wrong.org", 1, 0, 0)]})
    well_known = FakeWellKnown({"example.org": ok(delegated)})
    assert await make(dns, well_known).resolve_server("example.org") == expected
    assert well_known.requests == ["example.org"]
    # The server name's own SRV records are not consulted once it delegates.
    assert "_matrix-fed._tcp.example.org" not in dns.srv_queries


async def test_delegated_name_srv_matrix_fed():
    # 3.3: SRV target and port are connected to; certificate and Host stay the delegated name.
    dns = FakeDns(srv={
        "_matrix-fed._tcp.matrix.example.net": [("backend.example.net.", 8443, 10, 0)],
        "_matrix._tcp.matrix.example.net": [("old.example.net", 1, 0, 0)],
    })
    resolver = make(dns, FakeWellKnown({"example.org": ok("matrix.example.net")}))
    assert await resolver.resolve_server("example.org") == ResolvedServer(
        "backend.example.net", 8443, "matrix.example.net", "matrix.example.net")


async def test_delegated_name_deprecated_srv():
    # 3.4: _matrix._tcp when there is no _matrix-fed._tcp.
    dns = FakeDns(srv={"_matrix._tcp.matrix.example.net": [("old.example.net", 8449, 0, 0)]})
    resolver = make(dns, FakeWellKnown({"example.org": ok("matrix.example.net")}))
    assert await resolver.resolve_server("example.org") == ResolvedServer(
        "old.example.net", 8449, "matrix.example.net", "matrix.example.net")
    assert dns.srv_queries == ["_matrix-fed._tcp.matrix.example.net", "_matrix._tcp.matrix.example.net"]


# --- Steps 4 to 6: no delegation --------------------------------------------------------


async def test_srv_of_server_name():
    dns = FakeDns(srv={
        "_matrix-fed._tcp.example.org": [("fed.example.org", 8500, 0, 0)],
        "_matrix._tcp.example.org": [("old.example.org", 8501, 0, 0)],
    })
    assert await make(dns).resolve_server("example.org") == ResolvedServer(
        "fed.example.org", 8500, "example.org", "example.org")


async def test_deprecated_srv_of_server_name():
    dns = FakeDns(srv={"_matrix._tcp.example.org": [("old.example.org", 8501, 0, 0)]})
    assert await make(dns).resolve_server("example.org") == ResolvedServer(
        "old.example.org", 8501, "example.org", "example.org")


async def test_plain_8448():
    dns = FakeDns()
    assert await make(dns).resolve_server("example.org") == ResolvedServer(
        "example.org", 8448, "example.org", "example.org")
    assert dns.srv_queries == ["_matrix-fed._tcp.example.org", "_matrix._tcp.example.org"]


async def test_srv_lookup_failure_falls_through_and_is_not_cached():
    dns = FakeDns(srv={"_matrix-fed._tcp.example.org": DnsError("timeout")})
    resolver = make(dns)
    assert (await resolver.resolve_server("example.org")).port == 8448
    dns.srv_records["_matrix-fed._tcp.example.org"] = [("fed.example.org", 8500, 0, 0)]
    assert (await resolver.resolve_server("example.org")).port == 8500


@pytest.mark.parametrize(
    "answer",
    [
        WellKnownResponse(200, {}, b"not json"),
        WellKnownResponse(200, {}, b'["m.server"]'),
        WellKnownResponse(200, {}, b"{}"),
        WellKnownResponse(200, {}, b'{"m.server": 5}'),
        WellKnownResponse(200, {}, b'{"m.server": "not a name"}'),
        WellKnownResponse(200, {}, b'{"m.server": "host:99999"}'),
        WellKnownResponse(200, {}, b'{"m.server": NaN}'),
        WellKnownResponse(301, {}, b""),
        WellKnownResponse(500, {}, b'{"m.server": "good.example"}'),
        OSError("connection refused"),
    ],
)
async def test_invalid_well_known_falls_back_to_srv(answer):
    dns = FakeDns(srv={"_matrix-fed._tcp.example.org": [("fed.example.org", 8500, 0, 0)]})
    resolver = make(dns, FakeWellKnown({"example.org": answer}))
    assert await resolver.resolve_server("example.org") == ResolvedServer(
        "fed.example.org", 8500, "example.org", "example.org")


async def test_without_a_fetcher_well_known_is_skipped():
    resolver = ServerResolver(FakeDns())
    assert (await resolver.resolve_server("example.org")).port == 8448


@pytest.mark.parametrize("name", ["", "bad name", "example.org:0", "example.org:70000", "[::1", "a:b"])
async def test_invalid_server_names(name):
    with pytest.raises(DiscoveryError):
        await make().resolve_server(name)


# --- Caching ---------------------------------------------------------------------------


async def test_well_known_cached_for_default_24_hours():
    clock, well_known = Clock(), FakeWellKnown({"example.org": ok("a.example:1")})
    resolver = make(well_known=well_known, clock=clock)
    assert (await resolver.resolve_server("example.org")).host == "a.example"
    well_known.answers["example.org"] = ok("b.example:1")
    clock.now += 23 * HOUR
    assert (await resolver.resolve_server("example.org")).host == "a.example"
    clock.now += 2 * HOUR
    assert (await resolver.resolve_server("example.org")).host == "b.example"
    assert well_known.requests == ["example.org", "example.org"]


async def test_well_known_cache_control_max_age():
    clock = Clock()
    headers = {"cache-control": "public, max-age=7200"}
    well_known = FakeWellKnown({"example.org": ok("a.example:1", headers)})
    resolver = make(well_known=well_known, clock=clock)
    await resolver.resolve_server("example.org")
    clock.now += 1.5 * HOUR
    await resolver.resolve_server("example.org")
    assert len(well_known.requests) == 1
    clock.now += HOUR
    await resolver.resolve_server("example.org")
    assert len(well_known.requests) == 2


def test_well_known_ttl_rules():
    now = 1_700_000_000.0
    assert well_known_ttl({}, now) == 24 * HOUR
    assert well_known_ttl({"Cache-Control": "max-age=600"}, now) == 600
    assert well_known_ttl({"Cache-Control": 'max-age="900", must-revalidate'}, now) == 900
    # At most 48 hours; at least 5 minutes, even for no-store.
    assert well_known_ttl({"Cache-Control": "max-age=99999999"}, now) == 48 * HOUR
    assert well_known_ttl({"Cache-Control": "no-store"}, now) == 300
    assert well_known_ttl({"Cache-Control": "max-age=0"}, now) == 300
    # Expires, when there is no max-age.
    assert well_known_ttl({"Expires": "Tue, 14 Nov 2023 23:13:20 GMT"}, now) == HOUR
    assert well_known_ttl({"Expires": "garbage"}, now) == 300
    assert well_known_ttl(
        {"Cache-Control": "max-age=1200", "Expires": "Tue, 14 Nov 2023 23:13:20 GMT"}, now) == 1200


async def test_errors_are_cached_with_growing_periods_up_to_an_hour():
    clock, well_known = Clock(), FakeWellKnown()
    resolver = make(well_known=well_known, clock=clock)
    expected_periods = [120, 240, 480, 960, 1920, 3600, 3600]
    for period in expected_periods:
        await resolver.resolve_server("example.org")
        count = len(well_known.requests)
        clock.now += period - 1
        await resolver.resolve_server("example.org")
        assert len(well_known.requests) == count  # still cached
        clock.now += 1
    # A success ends the error periods.
    well_known.answers["example.org"] = ok("a.example:1")
    assert (await resolver.resolve_server("example.org")).host == "a.example"


async def test_transient_failure_keeps_the_previous_delegation():
    clock = Clock()
    well_known = FakeWellKnown({"example.org": ok("a.example:1", {"Cache-Control": "max-age=600"})})
    resolver = make(well_known=well_known, clock=clock)
    await resolver.resolve_server("example.org")
    clock.now += 601
    well_known.answers["example.org"] = TimeoutError()
    assert (await resolver.resolve_server("example.org")).host == "a.example"
    clock.now += 121
    well_known.answers["example.org"] = WellKnownResponse(503, {}, b"")
    assert (await resolver.resolve_server("example.org")).host == "a.example"
    # A definite answer (404: delegation removed) is believed.
    clock.now += 241
    del well_known.answers["example.org"]
    assert (await resolver.resolve_server("example.org")).host == "example.org"


async def test_concurrent_resolutions_share_one_well_known_request():
    well_known = FakeWellKnown({"example.org": ok("a.example:1")})
    resolver = make(well_known=well_known)
    results = await asyncio.gather(*(resolver.resolve_server("example.org") for _ in range(5)))
    assert {r.host for r in results} == {"a.example"}
    assert well_known.requests == ["example.org"]


async def test_srv_answers_are_cached():
    clock = Clock()
    dns = FakeDns(srv={"_matrix-fed._tcp.example.org": [("fed.example.org", 8500, 0, 0)]})
    resolver = make(dns, clock=clock)
    await resolver.resolve_server("example.org")
    await resolver.resolve_server("example.org")
    assert dns.srv_queries == ["_matrix-fed._tcp.example.org"]
    clock.now += 301  # the fake's TTL
    await resolver.resolve_server("example.org")
    assert dns.srv_queries == ["_matrix-fed._tcp.example.org"] * 2


# --- SRV ordering ------------------------------------------------------------------------


def test_srv_order_priority_then_weight():
    records = (
        SrvRecord("c", 1, 20, 0), SrvRecord("a", 1, 10, 0), SrvRecord("b", 1, 10, 100),
        SrvRecord(".", 1, 0, 0), SrvRecord("z", 0, 0, 0),
    )
    for seed in range(20):
        ordered = order_srv_records(records, random.Random(seed))
        assert [r.target for r in ordered][-1] == "c"
        assert {r.target for r in ordered[:2]} == {"a", "b"}
    # Weight 100 against 0: "b" comes first (nearly) always.
    firsts = [order_srv_records(records, random.Random(s))[0].target for s in range(50)]
    assert firsts.count("b") >= 45


async def test_srv_decidedly_absent_falls_through():
    dns = FakeDns(srv={"_matrix-fed._tcp.example.org": [(".", 0, 0, 0)],
                       "_matrix._tcp.example.org": [("old.example.org", 8501, 0, 0)]})
    assert (await make(dns).resolve_server("example.org")).port == 8501


# --- Addresses -----------------------------------------------------------------------------


async def test_resolve_addresses():
    dns = FakeDns(addresses={"fed.example.org": ["2001:db8::5", "192.0.2.5", "fe80::1%eth0"]})
    resolver = make(dns)
    assert await resolver.resolve_addresses("fed.example.org") == [
        ipaddress.ip_address("2001:db8::5"), ipaddress.ip_address("192.0.2.5"),
        ipaddress.ip_address("fe80::1")]
    assert await resolver.resolve_addresses("2001:db8::9") == [ipaddress.ip_address("2001:db8::9")]
    with pytest.raises(DiscoveryError):
        await resolver.resolve_addresses("missing.example.org")


async def test_system_dns_addresses_uses_the_hosts_file():
    addresses = await SystemDns().addresses("localhost")
    assert {ipaddress.ip_address(a).is_loopback for a in addresses} == {True}
