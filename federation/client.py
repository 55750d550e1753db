"""Outbound server-server HTTPS: discovery, the IP policy, TLS, X-Matrix signing, errors.

Spec: https://spec.matrix.org/v1.19/server-server-api/#api-standards and
https://spec.matrix.org/v1.19/server-server-api/#request-authentication

How a request goes out:

1. The destination is skipped if federation is off or it is backing off.
2. Its server name is resolved (``federation/discovery.py``) to a host, port,
   TLS name and Host header.
3. We look the host's addresses up ourselves and keep only those the IP policy
   allows (``homeserver/protocol/ip_policy.py`` with the configured allow and
   deny lists). aiohttp is then handed the checked IP literal, so what was
   checked is what is connected to (no second DNS answer, no rebinding);
   ``server_hostname`` gives the TLS name (SNI and certificate check) and the
   Host header is set explicitly. aiohttp keys its pool by IP *and* TLS name,
   so a connection verified for one name is never reused for another.
4. The request is signed (X-Matrix, destination included) over the path and
   query exactly as sent, and the JSON body with canonicaljson's encoder
   (events of old rooms may hold floats, so not the strict one).
5. The answer is read up to a size limit. Non-2xx raises ``FederationError``;
   DNS, connect, TLS, timeout and policy failures raise
   ``FederationUnreachable`` and count against the destination's backoff.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Mapping
from urllib.parse import quote

import aiohttp
import canonicaljson
import nacl.signing
from multidict import CIMultiDictProxy
from yarl import URL

from federation.backoff import Backoff
from federation.discovery import (
    WELL_KNOWN_MAX_BYTES,
    DiscoveryError,
    ResolvedServer,
    ServerResolver,
    SystemDns,
    WellKnownResponse,
)
from homeserver.config import FederationConfig
from homeserver.protocol.canonical import parse_json
from homeserver.protocol.ip_policy import AddressPolicy, IPAddress
from homeserver.protocol.xmatrix import sign_request

logger = logging.getLogger(__name__)

# Most answers are small; callers pass more for /send_join and /state (big rooms).
DEFAULT_MAX_JSON_BYTES = 16 * 1024 * 1024
LARGE_MAX_JSON_BYTES = 200 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
# Per address, so a dead first address leaves time for the next ones.
CONNECT_TIMEOUT_S = 15.0
MAX_ADDRESSES_TRIED = 3
CONNECTIONS_PER_HOST = 8
CONNECTIONS_TOTAL = 200
WELL_KNOWN_TIMEOUT_S = 30.0
WELL_KNOWN_MAX_REDIRECTS = 5
USER_AGENT = "homeserver (Matrix federation)"

_REDIRECTS = (301, 302, 303, 307, 308)
# A reverse proxy's answers while the homeserver behind it is down.
_DOWN_STATUSES = (502, 503, 504)


class FederationError(Exception):
    """The peer answered with an HTTP error."""

    def __init__(self, status: int, errcode: str | None, body: Any):
        self.status = status
        self.errcode = errcode
        self.body = body
        message = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status} {errcode or ''}: {message or ''}".strip())


class FederationUnreachable(Exception):
    """No usable answer: DNS, connect, TLS, timeout, refused by our IP policy, backing off."""


class AddressDenied(FederationUnreachable):
    """Every address of the destination is outside what the IP policy allows."""


class InvalidResponse(FederationUnreachable):
    """The peer answered, but not with something usable (too large, not JSON).

    Does not count against the backoff: the server is up.
    """


class ResponseTooLarge(InvalidResponse):
    """The answer is over the size limit of the call; nothing past it was read."""


def encode_query(query: Mapping[str, str | list[str]]) -> str:
    """``a=1&b=x&b=y`` with everything but unreserved characters percent-encoded."""
    parts = []
    for name, values in query.items():
        for value in [values] if isinstance(values, str) else values:
            parts.append(f"{quote(name, safe='')}={quote(value, safe='')}")
    return "&".join(parts)


def _url_host(address: IPAddress) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


async def _read_body(response: aiohttp.ClientResponse, limit: int, *, truncate: bool) -> bytes:
    """At most ``limit`` bytes (decompressed); past it, truncated or InvalidResponse."""
    if not truncate and response.content_length is not None and response.content_length > limit:
        raise ResponseTooLarge(f"answer of {response.content_length} bytes is over {limit}")
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.content.iter_chunked(65536):
        received += len(chunk)
        if received > limit:
            if truncate:
                chunks.append(chunk[: len(chunk) - (received - limit)])
                break
            raise ResponseTooLarge(f"answer is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class FederationClient:
    """One per server. ``close()`` on shutdown."""

    def __init__(
        self,
        server_name: str,
        signing_key: nacl.signing.SigningKey,
        config: FederationConfig,
        resolver: ServerResolver | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backoff: Backoff | None = None,
    ):
        self.server_name = server_name
        self.signing_key = signing_key
        self.config = config
        self.policy = AddressPolicy(config.ip_range_allowlist, config.ip_range_denylist)
        self.resolver = resolver or ServerResolver(SystemDns())
        if self.resolver.fetch_well_known is None:
            self.resolver.fetch_well_known = self.fetch_well_known
        # ssl_context: other trusted authorities than the system's (the tests' own CA).
        self._ssl: ssl.SSLContext | bool
        if not config.verify_certificates:
            self._ssl = False
        else:
            self._ssl = ssl_context or ssl.create_default_context()
        self._backoff = backoff or Backoff()
        self._session: aiohttp.ClientSession | None = None
        # Where /.well-known/matrix/server is asked for; only tests change it.
        self.well_known_port = 443

    def backoff(self) -> Backoff:
        return self._backoff

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl, limit=CONNECTIONS_TOTAL, limit_per_host=CONNECTIONS_PER_HOST
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # no proxy from the environment: we pick the address ourselves
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- The public verbs ---------------------------------------------------------

    async def get_json(
        self, destination: str, path: str, query: Mapping[str, str | list[str]] | None = None,
        *, signed: bool = True, timeout: float | None = None, max_bytes: int | None = None,
    ) -> Any:
        return await self._json("GET", destination, path, query, None, signed, timeout, max_bytes)

    async def put_json(
        self, destination: str, path: str, body: Any, *,
        query: Mapping[str, str | list[str]] | None = None, timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        return await self._json("PUT", destination, path, query, body, True, timeout, max_bytes)

    async def post_json(
        self, destination: str, path: str, body: Any, *,
        query: Mapping[str, str | list[str]] | None = None, timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        return await self._json("POST", destination, path, query, body, True, timeout, max_bytes)

    async def get_stream(
        self, destination: str, path: str, query: Mapping[str, str | list[str]] | None = None,
        *, max_bytes: int, timeout: float | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """A signed GET whose raw body is returned (media). 2xx and 3xx answers are
        returned as they are (redirects are not followed); 4xx and 5xx raise."""
        return await self._signed_request(
            "GET", destination, path, query, None, True, timeout, max_bytes, redirects_ok=True
        )

    async def _json(
        self, method: str, destination: str, path: str, query, body, signed: bool,
        timeout: float | None, max_bytes: int | None,
    ) -> Any:
        if method != "GET" and body is None:
            raise ValueError("PUT and POST carry a JSON body (an empty object at least)")
        _, _, raw = await self._signed_request(
            method, destination, path, query, body, signed, timeout,
            max_bytes or DEFAULT_MAX_JSON_BYTES,
        )
        try:
            return parse_json(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidResponse(f"{destination} answered with invalid JSON: {exc}") from exc

    # --- One request ----------------------------------------------------------------

    async def _signed_request(
        self, method: str, destination: str, path: str, query, body, signed: bool,
        timeout: float | None, max_bytes: int, *, redirects_ok: bool = False,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError(f"not an encoded request path: {path!r}")
        if not self.config.enabled:
            raise FederationUnreachable("federation is disabled")
        if self._backoff.is_down(destination):
            raise FederationUnreachable(
                f"{destination} is backing off for {self._backoff.retry_in(destination):.0f} s"
            )
        uri = path + ("?" + encode_query(query) if query else "")
        headers = {}
        data = None
        if body is not None:
            data = canonicaljson.encode_canonical_json(body)
            headers["Content-Type"] = "application/json"
        if signed:
            headers["Authorization"] = sign_request(
                self.signing_key, method, uri, self.server_name, destination, body
            )
        try:
            try:
                resolved = await self.resolver.resolve_server(destination)
            except DiscoveryError as exc:
                raise FederationUnreachable(str(exc)) from exc
            status, response_headers, raw = await self._send(
                method, resolved, uri, headers, data,
                timeout or self.config.request_timeout_seconds, max_bytes,
            )
        except InvalidResponse:
            self._backoff.record_success(destination)
            raise
        except FederationUnreachable as exc:
            self._backoff.record_failure(destination)
            logger.info("%s %s%s: %s", method, destination, path, exc)
            raise
        if status < 300 or (status < 400 and redirects_ok):
            self._backoff.record_success(destination)
            return status, response_headers, raw
        if status in _DOWN_STATUSES:
            self._backoff.record_failure(destination)
        else:
            self._backoff.record_success(destination)
        try:
            error_body: Any = parse_json(raw)
        except (ValueError, UnicodeDecodeError):
            error_body = raw.decode("utf-8", "replace")
        errcode = error_body.get("errcode") if isinstance(error_body, dict) else None
        raise FederationError(status, errcode if isinstance(errcode, str) else None, error_body)

    async def _send(
        self, method: str, resolved: ResolvedServer, uri: str, headers: dict[str, str],
        data: bytes | None, timeout: float, max_bytes: int,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """Connect to the first allowed address that answers; read the answer."""
        try:
            async with asyncio.timeout(timeout):
                try:
                    addresses = await self.resolver.resolve_addresses(resolved.host)
                except DiscoveryError as exc:
                    raise FederationUnreachable(str(exc)) from exc
                allowed = [a for a in addresses if self.policy.is_allowed(a)]
                if not allowed:
                    raise AddressDenied(
                        f"{resolved.host} resolves only to addresses we may not connect to"
                    )
                session = self._get_session()
                last_error: Exception | None = None
                for address in allowed[:MAX_ADDRESSES_TRIED]:
                    url = URL(f"https://{_url_host(address)}:{resolved.port}{uri}", encoded=True)
                    try:
                        response = await session.request(
                            method, url, data=data,
                            headers={**headers, "Host": resolved.host_header},
                            server_hostname=resolved.tls_server_name,
                            allow_redirects=False,
                            timeout=aiohttp.ClientTimeout(
                                total=None, sock_connect=min(CONNECT_TIMEOUT_S, timeout)
                            ),
                        )
                    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                        last_error = exc  # nothing was sent: the next address may be tried
                        continue
                    try:
                        ok = 200 <= response.status < 400
                        raw = await _read_body(
                            response, max_bytes if ok else MAX_ERROR_BODY_BYTES, truncate=not ok
                        )
                        return response.status, response.headers, raw
                    finally:
                        # Closing (not releasing) drops a connection whose body was left unread.
                        if not response.content.at_eof():
                            response.close()
                        response.release()
                raise FederationUnreachable(_describe(last_error))
        except FederationUnreachable:
            raise
        except TimeoutError as exc:
            raise FederationUnreachable(f"no answer within {timeout:.0f} s") from exc
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            raise FederationUnreachable(_describe(exc)) from exc

    # --- /.well-known/matrix/server -------------------------------------------------

    async def fetch_well_known(self, hostname: str) -> WellKnownResponse:
        """GET https://<hostname>/.well-known/matrix/server, unsigned, following
        redirects hop by hop with every hop's address checked like any other."""
        url = URL.build(scheme="https", host=hostname, port=self.well_known_port,
                        path="/.well-known/matrix/server")
        timeout = min(WELL_KNOWN_TIMEOUT_S, self.config.request_timeout_seconds)
        seen: set[str] = set()
        for _ in range(WELL_KNOWN_MAX_REDIRECTS + 1):
            if url.scheme != "https" or not url.raw_host:
                raise FederationUnreachable(f"will not follow a redirect to {url}")
            seen.add(str(url))
            host = url.host or url.raw_host
            port = url.port or 443
            host_header = _host_for_header(host) + ("" if port == 443 else f":{port}")
            target = ResolvedServer(host, port, host, host_header)
            status, headers, body = await self._send(
                "GET", target, url.raw_path_qs or "/", {}, None, timeout, WELL_KNOWN_MAX_BYTES
            )
            location = headers.get("Location")
            if status in _REDIRECTS and location:
                try:
                    url = url.join(URL(location))
                except ValueError as exc:
                    raise FederationUnreachable(f"invalid redirect {location!r}") from exc
                if str(url) in seen:
                    raise FederationUnreachable("redirect loop")
                continue
            return WellKnownResponse(status, headers, body)
        raise FederationUnreachable("too many redirects")


def _host_for_header(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _describe(exc: Exception | None) -> str:
    if exc is None:
        return "no address to connect to"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not accepted: {exc.certificate_error}"
    return f"{type(exc).__name__}: {exc}"
