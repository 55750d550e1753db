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

# One address policy for every outbound fetch (URL previews, remote media, federation).
from homeserver.protocol.ip_policy import AddressPolicy, IPAddress

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
