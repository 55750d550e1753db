"""Where to connect for a server name: host, port, TLS name and Host header.

Spec: https://spec.matrix.org/v1.19/server-server-api/#resolving-server-names

The steps are numbered as in the spec. ``ServerResolver`` does the deciding and
the caching; DNS and the ``/.well-known/matrix/server`` request come from the
objects it is given (``SystemDns`` and ``FederationClient.fetch_well_known`` in
the server, plain fakes in the tests). The addresses finally connected to are
looked up by ``resolve_addresses`` and checked against the IP policy by the
client, never here.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import socket
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver

from homeserver.protocol import ids
from homeserver.protocol.canonical import parse_json
from homeserver.protocol.ip_policy import IPAddress, parse_address

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8448

# /.well-known caching (spec step 3): the recommended default and maximum, a
# floor so that "no-store" does not mean a request per federation request, and
# errors cached for 2 min, doubling on each further failure up to an hour.
WELL_KNOWN_DEFAULT_TTL = 24 * 3600.0
WELL_KNOWN_MAX_TTL = 48 * 3600.0
WELL_KNOWN_MIN_TTL = 5 * 60.0
WELL_KNOWN_ERROR_TTL = 2 * 60.0
WELL_KNOWN_MAX_ERROR_TTL = 3600.0
WELL_KNOWN_MAX_BYTES = 50 * 1024

# SRV answers are kept for their TTL within these bounds; "no such record" for 10 min.
SRV_MIN_TTL = 60.0
SRV_MAX_TTL = 3600.0
SRV_NEGATIVE_TTL = 600.0

_CACHE_LIMIT = 10_000
_MAX_AGE_RE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


class DiscoveryError(Exception):
    """The server name cannot be resolved to anything to connect to."""


class DnsError(Exception):
    """A DNS lookup failed for a reason other than "no such record" (timeout, SERVFAIL)."""


@dataclass(frozen=True)
class ResolvedServer:
    # A host name to look up A/AAAA records for, or an IP literal (without brackets).
    host: str
    port: int
    # The name the certificate must be valid for and the SNI sent; an IP literal
    # means an IP certificate and no SNI (Python's ssl sends none for addresses).
    tls_server_name: str
    host_header: str


@dataclass(frozen=True)
class SrvRecord:
    target: str
    port: int
    priority: int
    weight: int


@dataclass(frozen=True)
class SrvAnswer:
    records: tuple[SrvRecord, ...]  # empty: there is no such record
    ttl: float


@dataclass(frozen=True)
class WellKnownResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


WellKnownFetcher = Callable[[str], Awaitable[WellKnownResponse]]


class Dns(Protocol):
    async def srv(self, name: str) -> SrvAnswer:
        """SRV records of ``name``; raises DnsError when the lookup itself fails."""

    async def addresses(self, host: str) -> list[str]:
        """The A and AAAA addresses of ``host``; raises DnsError when there are none."""


class SystemDns:
    """SRV through dnspython (the standard library cannot ask for SRV records),
    addresses through the system's getaddrinfo (so /etc/hosts applies)."""

    def __init__(self, lifetime: float = 10.0):
        self.lifetime = lifetime
        self._resolver: dns.asyncresolver.Resolver | None = None

    async def srv(self, name: str) -> SrvAnswer:
        try:
            if self._resolver is None:
                self._resolver = dns.asyncresolver.Resolver()
            answer = await self._resolver.resolve(name, "SRV", lifetime=self.lifetime)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return SrvAnswer((), SRV_NEGATIVE_TTL)
        except dns.exception.DNSException as exc:
            raise DnsError(f"SRV lookup of {name} failed: {exc}") from exc
        records = tuple(
            SrvRecord(r.target.to_text(omit_final_dot=True), r.port, r.priority, r.weight)
            for r in answer
        )
        return SrvAnswer(records, float(answer.rrset.ttl if answer.rrset is not None else 0))

    async def addresses(self, host: str) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise DnsError(f"cannot resolve {host}: {exc}") from exc
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """``hostname[:port]`` into the hostname as written (IPv6 in brackets) and the port."""
    if not ids.is_valid_server_name(server_name):
        raise DiscoveryError(f"{server_name!r} is not a valid server name")
    if server_name.startswith("["):
        end = server_name.index("]")
        host, rest = server_name[: end + 1], server_name[end + 1 :]
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = server_name.partition(":")
        port_text = port_text if sep else None
    if port_text is None:
        return host, None
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise DiscoveryError(f"{server_name!r} has an invalid port")
    return host, port


def well_known_ttl(headers: Mapping[str, str], now_wall: float) -> float:
    """How long a valid /.well-known answer may be used, from Cache-Control or Expires."""
    headers = {name.lower(): value for name, value in headers.items()}
    cache_control = headers.get("cache-control", "")
    if any(token.strip().lower() in ("no-store", "no-cache") for token in cache_control.split(",")):
        ttl = 0.0
    elif (match := _MAX_AGE_RE.search(cache_control)) is not None:
        ttl = float(match.group(1))
    elif "expires" in headers:
        try:
            expires = email.utils.parsedate_to_datetime(headers["expires"]).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            expires = 0.0  # an invalid Expires means "already expired" (RFC 9111 5.3)
        ttl = expires - now_wall
    else:
        ttl = WELL_KNOWN_DEFAULT_TTL
    return min(max(ttl, WELL_KNOWN_MIN_TTL), WELL_KNOWN_MAX_TTL)


def order_srv_records(records: tuple[SrvRecord, ...], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 order: lowest priority first; within one, a weighted random order.
    A target of "." (service decidedly absent) and port 0 are dropped."""
    usable = [
        SrvRecord(r.target.rstrip("."), r.port, r.priority, r.weight)
        for r in records
        if r.target.rstrip(".") and r.port
    ]
    ordered: list[SrvRecord] = []
    for priority in sorted({r.priority for r in usable}):
        group = [r for r in usable if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                pick = group[0]
            else:
                point = rng.uniform(0, total)
                for pick in group:
                    point -= pick.weight
                    if point <= 0:
                        break
            ordered.append(pick)
            group.remove(pick)
    return ordered


@dataclass
class _WellKnownEntry:
    delegated: str | None  # None: no valid delegation (an error answer)
    expires_at: float
    failures: int = 0


class ServerResolver:
    """Resolves server names per the spec, caching /.well-known and SRV answers in memory."""

    def __init__(
        self,
        dns: Dns,
        fetch_well_known: WellKnownFetcher | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.dns = dns
        # None until the federation client supplies its own (it owns outbound HTTP).
        self.fetch_well_known = fetch_well_known
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._well_known: dict[str, _WellKnownEntry] = {}
        self._well_known_inflight: dict[str, asyncio.Task[str | None]] = {}
        self._srv_cache: dict[str, tuple[tuple[SrvRecord, ...], float]] = {}

    async def resolve_server(self, server_name: str) -> ResolvedServer:
        hostname, port = split_server_name(server_name)
        # Step 1: an IP literal, with its port or 8448; Host is the server name.
        ip = parse_address(hostname)
        if ip is not None:
            return ResolvedServer(str(ip), port or DEFAULT_PORT, str(ip), server_name)
        # Step 2: a host name with an explicit port: no delegation is looked for.
        if port is not None:
            return ResolvedServer(hostname, port, hostname, server_name)
        # Step 3: /.well-known/matrix/server delegation.
        delegated = await self._delegation(hostname)
        if delegated is not None:
            d_host, d_port = split_server_name(delegated)
            d_ip = parse_address(d_host)
            # 3.1: an IP literal; Host is the delegated name with the port if given.
            if d_ip is not None:
                return ResolvedServer(str(d_ip), d_port or DEFAULT_PORT, str(d_ip), delegated)
            # 3.2: a delegated host name with a port.
            if d_port is not None:
                return ResolvedServer(d_host, d_port, d_host, delegated)
            # 3.3 and 3.4: SRV of the delegated name; certificate and Host stay that name.
            target = await self._srv_target(d_host)
            if target is not None:
                return ResolvedServer(target.target, target.port, d_host, d_host)
            # 3.5: the delegated name on 8448.
            return ResolvedServer(d_host, DEFAULT_PORT, d_host, d_host)
        # Steps 4 and 5: SRV of the server name itself.
        target = await self._srv_target(hostname)
        if target is not None:
            return ResolvedServer(target.target, target.port, hostname, hostname)
        # Step 6: the host name on 8448.
        return ResolvedServer(hostname, DEFAULT_PORT, hostname, hostname)

    async def resolve_addresses(self, host: str) -> list[IPAddress]:
        """The addresses to try for a ``ResolvedServer.host``, in the DNS answer's order."""
        literal = parse_address(host)
        if literal is not None:
            return [literal]
        try:
            answers = await self.dns.addresses(host)
        except DnsError as exc:
            raise DiscoveryError(str(exc)) from exc
        result = []
        for answer in answers:
            address = parse_address(answer.split("%", 1)[0])
            if address is not None:
                result.append(address)
        if not result:
            raise DiscoveryError(f"{host} has no A or AAAA record")
        return result

    # --- SRV ------------------------------------------------------------------------

    async def _srv_target(self, hostname: str) -> SrvRecord | None:
        # _matrix-fed._tcp (spec v1.8) first, then the deprecated _matrix._tcp.
        for service in ("_matrix-fed._tcp.", "_matrix._tcp."):
            ordered = order_srv_records(await self._lookup_srv(service + hostname), self._rng)
            if ordered:
                return ordered[0]
        return None

    async def _lookup_srv(self, name: str) -> tuple[SrvRecord, ...]:
        key = name.lower()
        cached = self._srv_cache.get(key)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            answer = await self.dns.srv(name)
        except DnsError as exc:
            # A failing SRV lookup must not make a server on plain 8448 unreachable:
            # go on to the next step (the TLS name check still guards the connection),
            # without caching, so the next request asks again.
            logger.warning("SRV lookup failed, continuing without it: %s", exc)
            return cached[0] if cached is not None else ()
        if answer.records:
            ttl = min(max(answer.ttl, SRV_MIN_TTL), SRV_MAX_TTL)
        else:
            ttl = SRV_NEGATIVE_TTL
        _bounded_put(self._srv_cache, key, (answer.records, now + ttl))
        return answer.records

    # --- /.well-known ---------------------------------------------------------------

    async def _delegation(self, hostname: str) -> str | None:
        key = hostname.lower()
        entry = self._well_known.get(key)
        if entry is not None and entry.expires_at > self._clock():
            return entry.delegated
        if self.fetch_well_known is None:
            return None
        task = self._well_known_inflight.get(key)
        if task is None:
            # Concurrent requests to one server share one /.well-known request.
            task = asyncio.ensure_future(self._refresh_well_known(key, hostname))
            self._well_known_inflight[key] = task
            task.add_done_callback(lambda _: self._well_known_inflight.pop(key, None))
        # Shielded: one caller giving up (its own timeout) does not cancel the others' lookup.
        return await asyncio.shield(task)

    async def _refresh_well_known(self, key: str, hostname: str) -> str | None:
        previous = self._well_known.get(key)
        delegated, ttl, transient = await self._fetch_delegation(hostname)
        now = self._clock()
        if delegated is not None:
            _bounded_put(self._well_known, key, _WellKnownEntry(delegated, now + ttl))
            return delegated
        failures = (previous.failures + 1) if previous is not None and previous.failures else 1
        error_ttl = min(WELL_KNOWN_ERROR_TTL * 2 ** (failures - 1), WELL_KNOWN_MAX_ERROR_TTL)
        # A server that delegated before and now times out or answers 5xx most
        # likely still delegates: keep the old answer while backing off.
        keep = previous.delegated if transient and previous is not None else None
        _bounded_put(self._well_known, key, _WellKnownEntry(keep, now + error_ttl, failures))
        return keep

    async def _fetch_delegation(self, hostname: str) -> tuple[str | None, float, bool]:
        """(delegated server name or None, cache time, whether the failure was transient)."""
        assert self.fetch_well_known is not None
        try:
            response = await self.fetch_well_known(hostname)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # network, TLS, timeout, policy: all mean "no answer"
            logger.info("GET https://%s/.well-known/matrix/server failed: %s", hostname, exc)
            return None, 0.0, True
        if response.status != 200:
            return None, 0.0, response.status >= 500
        try:
            body = parse_json(response.body)
        except (ValueError, UnicodeDecodeError):
            return None, 0.0, False
        server = body.get("m.server") if isinstance(body, dict) else None
        if not isinstance(server, str):
            return None, 0.0, False
        try:
            split_server_name(server)
        except DiscoveryError:
            return None, 0.0, False
        return server, well_known_ttl(response.headers, self._wall_clock()), False


def _bounded_put(cache: dict, key: str, value: object) -> None:
    """Insert, dropping the oldest entries past the limit (names come from remote input)."""
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > _CACHE_LIMIT:
        cache.pop(next(iter(cache)))


__all__ = [
    "DEFAULT_PORT",
    "DiscoveryError",
    "Dns",
    "DnsError",
    "ResolvedServer",
    "ServerResolver",
    "SrvAnswer",
    "SrvRecord",
    "SystemDns",
    "WellKnownResponse",
]
