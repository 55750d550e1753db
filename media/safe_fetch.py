"""Outbound HTTP for URL previews that cannot be turned against our own network (SSRF).

A preview makes the server fetch any URL a user names. Without care a user could
read the admin panel of the router, a cloud metadata service (169.254.169.254) or
a database on localhost. So:

- every address we would connect to is checked against a deny list of
  non-public ranges (loopback, private, link-local, CGNAT, multicast, reserved,
  unique-local IPv6), including IPv6 forms that embed an IPv4 address
  (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo), unless the admin allows
  the range explicitly;
- host names are resolved by our own resolver, which drops denied answers and
  hands aiohttp only the checked addresses, so DNS cannot answer differently
  between the check and the connect (DNS rebinding);
- redirects are followed one hop at a time, each hop checked like the first;
- bodies are read in chunks and refused past a size limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from typing import AsyncIterator, Iterable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges that are not the public Internet (IANA special-purpose registries).
DENIED_RANGES: tuple[str, ...] = (
    "0.0.0.0/8",          # "this network"
    "10.0.0.0/8",         # private
    "100.64.0.0/10",      # carrier-grade NAT
    "127.0.0.0/8",        # loopback
    "169.254.0.0/16",     # link-local, cloud metadata services
    "172.16.0.0/12",      # private
    "192.0.0.0/24",       # IETF protocol assignments
    "192.0.2.0/24",       # documentation
    "192.88.99.0/24",     # 6to4 relay anycast
    "192.168.0.0/16",     # private
    "198.18.0.0/15",      # benchmarking
    "198.51.100.0/24",    # documentation
    "203.0.113.0/24",     # documentation
    "224.0.0.0/4",        # multicast
    "240.0.0.0/4",        # reserved, broadcast
    "::/128",             # unspecified
    "::1/128",            # loopback
    "::/96",              # IPv4-compatible (deprecated)
    "::ffff:0:0/96",      # IPv4-mapped
    "64:ff9b::/96",       # NAT64
    "64:ff9b:1::/48",     # local-use NAT64
    "100::/64",           # discard
    "2001::/23",          # IETF protocol assignments, Teredo
    "2001:db8::/32",      # documentation
    "2002::/16",          # 6to4
    "fc00::/7",           # unique local
    "fe80::/10",          # link-local
    "fec0::/10",          # site-local (deprecated)
    "ff00::/8",           # multicast
)

_REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    """The URL could not be fetched; the message is safe to show to the user."""


class DestinationDenied(FetchError):
    """The URL points at an address outside the public Internet."""


class BodyTooLarge(FetchError):
    pass


class UnexpectedStatus(FetchError):
    def __init__(self, status: int):
        super().__init__(f"The page answered HTTP {status}")
        self.status = status


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries, which is where it really goes."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = address.packed
    if packed[:12] == bytes(12) and packed[12:] not in (bytes(4), b"\x00\x00\x00\x01"):
        return ipaddress.IPv4Address(packed[12:])  # IPv4-compatible ::a.b.c.d
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(packed[12:])
    return None


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


class AddressPolicy:
    """Which addresses may be connected to: everything public, plus explicit allowances."""

    def __init__(self, allowed: Iterable[str] = (), extra_denied: Iterable[str] = ()):
        self.allowed = tuple(ipaddress.ip_network(net, strict=False) for net in allowed)
        self.denied = tuple(
            ipaddress.ip_network(net, strict=False) for net in (*DENIED_RANGES, *extra_denied)
        )

    def is_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(int(address))  # fe80::1%eth0 is still fe80::1
        # The allow list matches the address as written: allowing 127.0.0.1 does
        # not allow ::ffff:127.0.0.1 (list that form too if it is really wanted).
        if any(address in net for net in self.allowed if net.version == address.version):
            return True
        if any(address in net for net in self.denied if net.version == address.version):
            return False
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None and not self.is_allowed(embedded):
                return False
        return True


class _CheckingResolver(AbstractResolver):
    """Resolves with the system resolver and returns only the addresses the policy allows.

    aiohttp connects to exactly the addresses returned here, so the checked
    answer is the one used.
    """

    def __init__(self, policy: AddressPolicy):
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            address = ipaddress.ip_address(sockaddr[0])
            if not self.policy.is_allowed(address):
                continue
            results.append({
                "hostname": host, "host": str(address), "port": sockaddr[1],
                "family": fam, "proto": proto, "flags": socket.AI_NUMERICHOST,
            })
        if not results:
            raise _DeniedResolution(f"{host} has no address we may connect to")
        return results

    async def close(self) -> None:
        pass


class _DeniedResolution(OSError):
    """Raised inside aiohttp's connector; recognised again after aiohttp wraps it."""


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class SafeResponse:
    """A checked, successful response whose body is read within the size limit."""

    def __init__(self, response: aiohttp.ClientResponse, url: URL, max_bytes: int):
        self._response = response
        self.url = url
        self.status = response.status
        self.headers = response.headers
        self.content_type = response.content_type
        self.charset = response.charset
        self.max_bytes = max_bytes

    async def chunks(self, chunk_size: int = 65_536) -> AsyncIterator[bytes]:
        length = self._response.content_length
        if length is not None and length > self.max_bytes:
            raise BodyTooLarge(f"The page is larger than {self.max_bytes} bytes")
        received = 0
        async for chunk in self._response.content.iter_chunked(chunk_size):
            received += len(chunk)
            if received > self.max_bytes:
                # Stop reading: the rest is never downloaded (the connection is dropped).
                raise BodyTooLarge(f"The page is larger than {self.max_bytes} bytes")
            yield chunk

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)


class SafeFetcher:
    """GETs public URLs with the checks above. One per app; close() on shutdown."""

    def __init__(
        self, policy: AddressPolicy, max_bytes: int, max_redirects: int = 5,
        user_agent: str = "homeserver URL preview", accept_language: str = "en",
        connect_timeout_s: float = 10.0,
    ):
        self.policy = policy
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.headers = {"User-Agent": user_agent, "Accept-Language": accept_language}
        self.connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_CheckingResolver(self.policy),
                # A cached answer would skip the resolver, and with it the check.
                use_dns_cache=False,
                limit=20,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # no proxy from the environment: we connect ourselves
                timeout=aiohttp.ClientTimeout(sock_connect=self.connect_timeout_s),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_url(self, url: URL) -> None:
        """Checks what can be checked before connecting: scheme and a literal address."""
        if url.scheme not in ("http", "https") or not url.host:
            raise FetchError("Only http and https URLs can be previewed")
        host = url.host
        address = _literal_address(host)
        if address is not None:
            if not self.policy.is_allowed(address):
                raise DestinationDenied("The URL points at an address that may not be fetched")
        elif host.replace(".", "").isdigit() or host.lower().startswith("0x"):
            # Legacy numeric forms (2130706433, 127.1, 0x7f.1) name addresses in
            # ways the check above does not parse; nothing legitimate uses them.
            raise DestinationDenied("The URL points at an address that may not be fetched")

    @contextlib.asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[SafeResponse]:
        """GET url, following redirects hop by hop; yields a 2xx response."""
        try:
            current = URL(url, encoded=False)
        except (ValueError, TypeError):
            raise FetchError("Not a valid URL")
        session = self._get_session()
        for _ in range(self.max_redirects + 1):
            self.check_url(current)
            try:
                response = await session.get(current, headers=self.headers, allow_redirects=False)
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, _DeniedResolution):
                    raise DestinationDenied("The URL's host resolves to an address that may not be fetched")
                raise FetchError(f"Could not connect to {current.host}")
            except aiohttp.InvalidURL:
                raise FetchError("Not a valid URL")
            except aiohttp.ClientError as e:
                raise FetchError(f"Could not fetch the URL: {type(e).__name__}")
            try:
                if response.status in _REDIRECTS and "Location" in response.headers:
                    try:
                        current = current.join(URL(response.headers["Location"]))
                    except ValueError:
                        raise FetchError("The page redirects to an invalid URL")
                    continue
                if not 200 <= response.status < 300:
                    raise UnexpectedStatus(response.status)
                try:
                    yield SafeResponse(response, current, self.max_bytes)
                except aiohttp.ClientError as e:
                    raise FetchError(f"Could not read the page: {type(e).__name__}")
                return
            finally:
                # Closing (not releasing) drops the connection: an unread or
                # oversized body is never downloaded.
                response.close()
        raise FetchError("Too many redirects")
