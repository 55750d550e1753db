"""URL previews: GET /_matrix/client/v1/media/preview_url.

A real aiohttp server on 127.0.0.1 plays the web sites. It counts requests per
path, so the denial tests can show that a denied URL was never fetched.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from homeserver.storage.url_previews import UrlPreviewStore
from media.safe_fetch import AddressPolicy

PREVIEW = "/_matrix/client/v1/media/preview_url"
LEGACY_PREVIEW = "/_matrix/media/v3/preview_url"

LIMIT = 200_000  # max_page_bytes in the test config

ENABLED_ALLOWING_LOCALHOST = {"media": {"url_preview": {
    "enabled": True, "ip_range_allowlist": ["127.0.0.1/32"], "max_page_bytes": LIMIT, "timeout_seconds": 2,
}}}
ENABLED_NO_ALLOWLIST = {"media": {"url_preview": {"enabled": True}}}


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


PNG = _png(40, 30)

PAGE = b"""<!doctype html><html><head>
<title>Fallback title</title>
<meta property="og:title" content="Holiday   photos">
<meta property="og:description" content="Pictures from the beach &amp; the hills">
<meta property="og:image" content="/images/beach.png">
</head><body><p>Hello</p></body></html>"""


def _serve(body: bytes, content_type: str, status: int = 200):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, status=status, headers={"Content-Type": content_type})
    return handler


def _redirect(target):
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(target())
    return handler


class Site:
    """The web site the previews fetch, with a request counter per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.port = 0
        self.redirect_target = ""

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def app(self) -> web.Application:
        app = web.Application()

        @web.middleware
        async def count(request: web.Request, handler):
            self.hits[request.path] += 1
            return await handler(request)

        app.middlewares.append(count)
        r = app.router
        r.add_get("/page.html", _serve(PAGE, "text/html"))
        r.add_get("/images/beach.png", _serve(PNG, "image/png"))
        r.add_get("/plain.html", _serve(
            b"<html><head><title>Plain  page</title><meta name='description' content='About us'>"
            b"</head><body><img src='pic.txt'></body></html>", "text/html"))
        r.add_get("/latin1.html", _serve(
            "<title>Caf\u00e9 cr\u00e8me</title>".encode("latin-1"), "text/html; charset=iso-8859-1"))
        r.add_get("/pic.txt", _serve(b"not an image", "text/plain"))
        r.add_get("/file.pdf", _serve(b"%PDF-1.4", "application/pdf"))
        r.add_get("/missing.html", _serve(b"no", "text/html", status=404))
        r.add_get("/redirect", _redirect(lambda: "/page.html"))
        r.add_get("/redirect-loop", _redirect(lambda: "/redirect-loop"))
        r.add_get("/redirect-away", _redirect(lambda: self.redirect_target))
        r.add_get("/big-declared.html", self._big_declared)
        r.add_get("/big-chunked.html", self._big_chunked)
        r.add_get("/slow.html", self._slow)
        return app

    async def _big_declared(self, request: web.Request) -> web.Response:
        return web.Response(body=b"<html>" + b"a" * (LIMIT * 2), content_type="text/html")

    async def _big_chunked(self, request: web.Request) -> web.StreamResponse:
        # No Content-Length: the limit must be enforced while reading.
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(100):
                await response.write(b"<p>" + b"x" * 65_536 + b"</p>")
        except (ConnectionError, RuntimeError):
            pass  # the previewer hung up, as it should
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(body=PAGE, content_type="text/html")


@pytest.fixture
async def site():
    site = Site()
    runner = web.AppRunner(site.app(), shutdown_timeout=0.1)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    site.port = tcp._server.sockets[0].getsockname()[1]
    try:
        yield site
    finally:
        await runner.cleanup()


async def preview(user, url: str, path: str = PREVIEW, **params: Any):
    return await user.get(path, params={"url": url, **params})


# Off by default.


async def test_preview_is_off_by_default(api, site):
    alice = await api.register("alice")
    for path in (PREVIEW, LEGACY_PREVIEW):
        r = await preview(alice, site.url("/page.html"), path)
        assert r.status == 404 and r.errcode == "M_UNRECOGNIZED", r
    assert api.services.config.media.url_preview.enabled is False
    assert site.hits["/page.html"] == 0


async def test_preview_requires_authentication(api, site):
    r = await api.request("GET", PREVIEW, params={"url": site.url("/page.html")})
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


# Enabled, with 127.0.0.1 allowed.


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_preview_reads_open_graph_and_stores_the_image(api, site):
    alice = await api.register("alice")
    r = await preview(alice, site.url("/page.html"))
    assert r.status == 200, r
    assert r["og:title"] == "Holiday photos"
    assert r["og:description"] == "Pictures from the beach & the hills"
    assert r["og:image"].startswith("mxc://test.local/")
    assert (r["og:image:width"], r["og:image:height"]) == (40, 30)
    assert r["og:image:type"] == "image/png"
    assert r["matrix:image:size"] == len(PNG)
    server_name, media_id = r["og:image"].removeprefix("mxc://").split("/")
    download = await api.client.get(
        f"/_matrix/client/v1/media/download/{server_name}/{media_id}",
        headers={"Authorization": f"Bearer {alice.access_token}"},
    )
    assert download.status == 200
    assert await download.read() == PNG


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_legacy_path_answers_the_same(api, site):
    alice = await api.register("alice")
    r = await preview(alice, site.url("/plain.html"), LEGACY_PREVIEW)
    assert r.status == 200, r
    assert r["og:title"] == "Plain page"


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_fallbacks_without_open_graph_tags(api, site):
    alice = await api.register("alice")
    r = await preview(alice, site.url("/plain.html"))
    assert r.status == 200, r
    # <title> and <meta name=description>; the <img> is not an image, so no og:image.
    assert r.body == {"og:title": "Plain page", "og:description": "About us"}
    assert site.hits["/pic.txt"] == 1


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_page_charset_from_header(api, site):
    alice = await api.register("alice")
    r = await preview(alice, site.url("/latin1.html"))
    assert r.status == 200, r
    assert r["og:title"] == "Caf\u00e9 cr\u00e8me"


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_image_url_previews_as_the_image(api, site):
    alice = await api.register("alice")
    r = await preview(alice, site.url("/images/beach.png"))
    assert r.status == 200, r
    assert r["og:image"].startswith("mxc://test.local/")
    assert (r["og:image:width"], r["og:image:height"]) == (40, 30)
    assert r["matrix:image:size"] == len(PNG)


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_host_name_resolving_to_an_allowed_address(api, site):
    # localhost resolves to 127.0.0.1 (allowed) and maybe ::1 (denied, dropped).
    alice = await api.register("alice")
    r = await preview(alice, site.url("/plain.html", host="localhost"))
    assert r.status == 200, r
    assert r["og:title"] == "Plain page"


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_redirects_are_followed(api, site):
    alice = await api.register("alice")
    r = await preview(alice, site.url("/redirect"))
    assert r.status == 200, r
    assert r["og:title"] == "Holiday photos"
    assert site.hits["/redirect"] == 1 and site.hits["/page.html"] == 1


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_previews_are_cached(api, site):
    alice = await api.register("alice")
    bob = await api.register("bob")
    first = await preview(alice, site.url("/plain.html"))
    second = await preview(bob, site.url("/plain.html"))
    assert first.status == second.status == 200
    assert first.body == second.body
    assert site.hits["/plain.html"] == 1
    assert await UrlPreviewStore(api.services.db).count(site.url("/plain.html")) == 1


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_concurrent_requests_fetch_once(api, site):
    alice = await api.register("alice")
    results = await asyncio.gather(*(preview(alice, site.url("/plain.html")) for _ in range(5)))
    assert [r.status for r in results] == [200] * 5
    assert site.hits["/plain.html"] == 1


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_ts_parameter(api, site):
    alice = await api.register("alice")
    url = site.url("/plain.html")
    # A time before anything was fetched: the server may answer with a newer preview.
    first = await preview(alice, url, ts="1000")
    assert first.status == 200 and first["og:title"] == "Plain page"
    again = await preview(alice, url, ts="1000")
    assert again.body == first.body
    assert site.hits["/plain.html"] == 1
    for bad in ("yesterday", "-5", "1.5"):
        r = await preview(alice, url, ts=bad)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (bad, r)


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_expired_previews_are_fetched_again(api, site):
    alice = await api.register("alice")
    url = site.url("/plain.html")
    assert (await preview(alice, url)).status == 200
    await api.services.db.execute("UPDATE url_previews SET expires_ts = 1 WHERE url = $1", url)
    assert (await preview(alice, url)).status == 200
    assert site.hits["/plain.html"] == 2


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_bad_url_parameter(api, site):
    alice = await api.register("alice")
    r = await alice.get(PREVIEW)
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    for url in ("ftp://127.0.0.1/file", "file:///etc/passwd", "not a url", "http://"):
        r = await preview(alice, url)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (url, r)


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_non_html_content_is_refused(api, site):
    alice = await api.register("alice")
    r = await preview(alice, site.url("/file.pdf"))
    assert r.status == 502 and r.errcode == "M_UNKNOWN", r
    assert await UrlPreviewStore(api.services.db).count(site.url("/file.pdf")) == 0


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
@pytest.mark.parametrize("path", ["/big-declared.html", "/big-chunked.html"])
async def test_oversized_pages_are_refused(api, site, path):
    alice = await api.register("alice")
    r = await preview(alice, site.url(path))
    assert r.status == 502 and r.errcode == "M_TOO_LARGE", r
    assert await UrlPreviewStore(api.services.db).count(site.url(path)) == 0


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_error_status_redirect_loop_and_slow_page(api, site):
    alice = await api.register("alice")
    r = await preview(alice, site.url("/missing.html"))
    assert r.status == 502 and r.errcode == "M_UNKNOWN", r
    r = await preview(alice, site.url("/redirect-loop"))
    assert r.status == 502 and r.errcode == "M_UNKNOWN", r
    assert site.hits["/redirect-loop"] == 6  # the first request and five redirects
    r = await preview(alice, site.url("/slow.html"))
    assert r.status == 504 and r.errcode == "M_UNKNOWN", r
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        r = await preview(alice, f"http://127.0.0.1:{closed.getsockname()[1]}/")
    assert r.status == 502 and r.errcode == "M_UNKNOWN", r


# Denied destinations: never connected to.


@pytest.mark.parametrize("config_overrides", [ENABLED_NO_ALLOWLIST])
async def test_loopback_is_denied_without_allowlist(api, site):
    alice = await api.register("alice")
    for host in ("127.0.0.1", "localhost", "[::1]"):
        r = await preview(alice, site.url("/page.html", host=host))
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", (host, r)
    assert site.hits["/page.html"] == 0


DENIED_HOSTS = [
    "[::ffff:127.0.0.1]",        # IPv4-mapped loopback
    "[::ffff:7f00:1]",           # the same, hex
    "[::127.0.0.1]",             # IPv4-compatible
    "[2002:7f00:1::1]",          # 6to4 of 127.0.0.1
    "[64:ff9b::7f00:1]",         # NAT64 of 127.0.0.1
    "[::1]",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",           # cloud metadata
    "100.64.0.1",                # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "[fd00::1]",                 # unique local
    "[fe80::1]",
    "[ff02::1]",
    "2130706433",                # 127.0.0.1 as one number
    "127.1",
    "0x7f.0.0.1",
]


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
async def test_non_public_addresses_are_denied_even_with_loopback_allowed(api, site):
    alice = await api.register("alice")
    for host in DENIED_HOSTS:
        r = await preview(alice, site.url("/page.html", host=host))
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", (host, r)
    assert site.hits["/page.html"] == 0


@pytest.mark.parametrize("config_overrides", [ENABLED_ALLOWING_LOCALHOST])
@pytest.mark.parametrize("target", ["http://[::1]:{port}/page.html", "http://10.0.0.1/", "http://169.254.169.254/"])
async def test_redirect_to_a_denied_address_is_not_followed(api, site, target):
    alice = await api.register("alice")
    site.redirect_target = target.format(port=site.port)
    r = await preview(alice, site.url("/redirect-away"))
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert site.hits["/redirect-away"] == 1 and site.hits["/page.html"] == 0


# The address policy itself.


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.31.255.255", "192.168.0.1", "169.254.1.1", "100.127.0.1", "0.0.0.0",
    "224.0.0.251", "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::", "::1", "::ffff:10.0.0.1", "::ffff:8.8.8.8", "::10.0.0.1", "2002:a00:1::", "64:ff9b::a00:1",
    "64:ff9b:1::1", "fc00::1", "fdff::1", "fe80::1%eth0", "fec0::1", "ff00::1", "2001:db8::1", "100::1",
])
def test_policy_denies_non_public_addresses(address):
    assert not AddressPolicy().is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1111", "2a00:1450::1"])
def test_policy_allows_public_addresses(address):
    assert AddressPolicy().is_allowed(ipaddress.ip_address(address))


def test_policy_allow_and_extra_deny_lists():
    policy = AddressPolicy(allowed=["10.5.0.0/16"], extra_denied=["8.8.8.0/24"])
    assert policy.is_allowed(ipaddress.ip_address("10.5.1.1"))
    assert not policy.is_allowed(ipaddress.ip_address("10.6.1.1"))
    assert not policy.is_allowed(ipaddress.ip_address("::ffff:10.5.1.1"))
    assert not policy.is_allowed(ipaddress.ip_address("8.8.8.8"))
    assert policy.is_allowed(ipaddress.ip_address("8.8.4.4"))
