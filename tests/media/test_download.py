"""Downloads: authenticated and frozen legacy routes, headers, ranges, bad and unknown ids,
deleted, quarantined and remote media."""

from __future__ import annotations

import datetime

import pytest

from homeserver.services.clock import now_ms
from media.app_keys import MEDIA
from tests.media.media_helpers import (
    DOWNLOAD, LEGACY_DOWNLOAD, LEGACY_THUMBNAIL, SERVER, THUMBNAIL, download_raw, image_bytes,
    raw_get, stored_files, upload_ok,
)

CSP = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
    " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)
TOMORROW = (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)).isoformat()


async def test_download_headers(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    data = image_bytes(40, 30, "PNG")
    media_id = await upload_ok(alice, data, "image/png", filename="beach.png")
    status, body, headers = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", bob.access_token)
    assert (status, body) == (200, data)
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == "inline; filename=beach.png"
    assert headers["Content-Length"] == str(len(data))
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert headers["Access-Control-Allow-Origin"] == "*"
    # An authenticated response must not be kept by shared caches.
    assert headers["Cache-Control"] == "private, max-age=86400"
    assert headers["Accept-Ranges"] == "bytes"


async def test_only_safe_types_are_inline(api):
    alice = await api.register("alice")
    for content_type, served, disposition in [
        ("text/html", "text/html; charset=UTF-8", "attachment; filename=page"),
        ("image/svg+xml", "image/svg+xml; charset=UTF-8", "attachment; filename=page"),
        ("application/javascript", "application/javascript", "attachment; filename=page"),
        ("application/pdf", "application/pdf", "attachment; filename=page"),
        ("text/plain", "text/plain; charset=UTF-8", "inline; filename=page"),
        ("text/plain; charset=ISO-8859-1", "text/plain; charset=ISO-8859-1", "inline; filename=page"),
        ("video/mp4", "video/mp4", "inline; filename=page"),
        ("IMAGE/JPEG", "IMAGE/JPEG", "inline; filename=page"),
    ]:
        media_id = await upload_ok(alice, b"<script>alert(1)</script>", content_type, filename="page")
        status, _, headers = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
        assert status == 200
        assert headers["Content-Type"] == served, content_type
        assert headers["Content-Disposition"] == disposition, content_type
        assert headers["Content-Security-Policy"] == CSP


async def test_upload_without_file_name_has_none_in_the_disposition(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"x", "image/png")
    _, _, headers = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
    assert headers["Content-Disposition"] == "inline"


async def test_file_name_in_the_path_overrides_the_upload_name(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"x", "application/pdf", filename="scan.pdf")
    status, _, headers = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}/tax%20return.pdf", alice.access_token)
    assert status == 200
    assert headers["Content-Disposition"] == "attachment; filename*=utf-8''tax%20return.pdf"
    status, _, headers = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}/a;b=c\".pdf", alice.access_token)
    assert headers["Content-Disposition"] == "attachment; filename*=utf-8''a%3Bb%3Dc%22.pdf"


async def test_range_requests_for_video_seeking(api):
    alice = await api.register("alice")
    data = bytes(range(256)) * 1000
    media_id = await upload_ok(alice, data, "video/mp4")
    url = f"{DOWNLOAD}/{SERVER}/{media_id}"
    status, body, headers = await download_raw(api, url, alice.access_token, {"Range": "bytes=1000-1999"})
    assert (status, body) == (206, data[1000:2000])
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    status, body, _ = await download_raw(api, url, alice.access_token, {"Range": "bytes=-10"})
    assert (status, body) == (206, data[-10:])
    status, body, _ = await download_raw(api, url, alice.access_token, {"Range": "bytes=255990-"})
    assert (status, body) == (206, data[255990:])
    status, _, headers = await download_raw(api, url, alice.access_token, {"Range": f"bytes={len(data)}-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(data)}"


async def test_head_gives_headers_only(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"12345", "text/plain")
    async with api.client.head(f"{DOWNLOAD}/{SERVER}/{media_id}",
                               headers={"Authorization": f"Bearer {alice.access_token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "5"
        assert await resp.read() == b""


async def test_authenticated_download_needs_a_token(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"private", "text/plain")
    r = await api.request("GET", f"{DOWNLOAD}/{SERVER}/{media_id}")
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")
    r = await api.request("GET", f"{THUMBNAIL}/{SERVER}/{media_id}", params={"width": "32", "height": "32"})
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")


async def test_unknown_media_is_not_found(api):
    alice = await api.register("alice")
    r = await alice.get(f"{DOWNLOAD}/{SERVER}/doesNotExist")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await alice.get(f"{DOWNLOAD}/{SERVER}/doesNotExist/name.txt")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


# Federation off: what is not cached here cannot be fetched, so it is not found.
@pytest.mark.parametrize("config_overrides", [{"federation": {"enabled": False}}])
async def test_media_of_another_server_is_not_found_without_federation(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"ours", "text/plain")
    # The same media id on another server is other media, which we do not have.
    for path in (f"{DOWNLOAD}/matrix.org/{media_id}", f"{THUMBNAIL}/matrix.org/{media_id}?width=32&height=32"):
        r = await alice.get(path)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), path


# Federation off: what is not cached here cannot be fetched, so it is not found.
@pytest.mark.parametrize("config_overrides", [{"federation": {"enabled": False}}])
async def test_path_traversal_in_server_name_or_media_id_is_refused(api):
    alice = await api.register("alice")
    await upload_ok(alice, b"something stored", "text/plain")
    for path in [
        f"{DOWNLOAD}/{SERVER}/..%2F..%2F..%2Fetc%2Fpasswd",
        f"{DOWNLOAD}/{SERVER}/%2e%2e",
        f"{DOWNLOAD}/{SERVER}/abc.def",
        f"{DOWNLOAD}/{SERVER}/abc%00def",
        f"{DOWNLOAD}/..%2F..%2Fetc/passwd",
        f"{DOWNLOAD}/..%2F..%2F{SERVER}/abcdef",
        f"{DOWNLOAD}/%2e%2e/abcdef",
        f"{DOWNLOAD}/test.local%2F..%2F..%2Fcontent/abcdef",
        f"{DOWNLOAD}/{SERVER}/{'a' * 256}",
        f"{THUMBNAIL}/{SERVER}/..%2F..%2Fetc?width=32&height=32",
        f"{LEGACY_DOWNLOAD}/{SERVER}/..%2Fcontent",
    ]:
        status, body = await raw_get(api, path, alice.access_token)
        assert status == 404, path
        assert b'"M_NOT_FOUND"' in body, path


async def test_path_traversal_in_file_name_is_refused(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"data", "text/plain")
    for file_name in ["..%2F..%2Fetc%2Fpasswd", "a%5Cb", "%2e%2e", "bad%0d%0aSet-Cookie:%20x=1"]:
        status, body = await raw_get(api, f"{DOWNLOAD}/{SERVER}/{media_id}/{file_name}", alice.access_token)
        assert status == 400, file_name
        assert b'"M_INVALID_PARAM"' in body, file_name


async def test_legacy_routes_are_frozen_by_default(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(100, 100, "PNG"), "image/png")
    for path in (
        f"{LEGACY_DOWNLOAD}/{SERVER}/{media_id}",
        f"{LEGACY_DOWNLOAD}/{SERVER}/{media_id}/name.png",
        f"/_matrix/media/r0/download/{SERVER}/{media_id}",
        f"{LEGACY_THUMBNAIL}/{SERVER}/{media_id}?width=32&height=32",
    ):
        r = await api.request("GET", path)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), path
        # A token does not unfreeze them either.
        r = await alice.get(path)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), path


@pytest.mark.parametrize("config_overrides", [{"media": {"legacy_unauthenticated_cutoff": "2024-09-01"}}])
async def test_legacy_routes_serve_media_from_before_the_cutoff(api, services):
    alice = await api.register("alice")
    old = await upload_ok(alice, image_bytes(100, 100, "PNG"), "image/png", filename="old.png")
    new = await upload_ok(alice, b"new", "text/plain")
    await services.db.execute(
        "UPDATE media SET uploaded_ts = $1 WHERE media_id = $2",
        int(datetime.datetime(2024, 8, 31, 23, 59, tzinfo=datetime.timezone.utc).timestamp() * 1000), old,
    )
    status, body, headers = await download_raw(api, f"{LEGACY_DOWNLOAD}/{SERVER}/{old}")
    assert status == 200
    assert headers["Content-Disposition"] == "inline; filename=old.png"
    assert headers["Cache-Control"] == "public,max-age=86400,s-maxage=86400"
    status, body, headers = await download_raw(api, f"{LEGACY_THUMBNAIL}/{SERVER}/{old}?width=32&height=32&method=crop")
    assert status == 200 and headers["Content-Type"] == "image/png"
    r = await api.request("GET", f"{LEGACY_DOWNLOAD}/{SERVER}/{new}")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


@pytest.mark.parametrize("config_overrides", [{"media": {"legacy_unauthenticated_cutoff": TOMORROW}}])
async def test_legacy_routes_before_a_future_cutoff_serve_everything(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"hello", "text/plain")
    status, body, _ = await download_raw(api, f"/_matrix/media/r0/download/{SERVER}/{media_id}")
    assert (status, body) == (200, b"hello")


async def test_deleted_media_is_gone_everywhere(api, services):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(400, 300), "image/jpeg")
    kept = await upload_ok(alice, b"other", "text/plain")
    assert len(stored_files(services)) > 2  # the image, its thumbnails, the text
    repo = api.client.app[MEDIA]
    assert await repo.delete_local(media_id) is True
    assert await repo.delete_local(media_id) is False
    for path in (f"{DOWNLOAD}/{SERVER}/{media_id}", f"{THUMBNAIL}/{SERVER}/{media_id}?width=32&height=32"):
        r = await alice.get(path)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), path
    assert len(stored_files(services)) == 1
    assert await services.db.fetchval("SELECT count(*) FROM media_thumbnails") == 0
    status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{kept}", alice.access_token)
    assert (status, body) == (200, b"other")


async def test_deleting_one_of_two_identical_uploads_keeps_the_file(api, services):
    alice = await api.register("alice")
    first = await upload_ok(alice, b"shared bytes", "text/plain")
    second = await upload_ok(alice, b"shared bytes", "text/plain")
    repo = api.client.app[MEDIA]
    await repo.delete_local(first)
    assert len(stored_files(services)) == 1
    status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{second}", alice.access_token)
    assert (status, body) == (200, b"shared bytes")
    await repo.delete_local(second)
    assert stored_files(services) == []


async def test_quarantined_media_is_not_found(api, services):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"bad", "text/plain")
    await services.db.execute("UPDATE media SET quarantined_by = $1 WHERE media_id = $2", alice.user_id, media_id)
    r = await alice.get(f"{DOWNLOAD}/{SERVER}/{media_id}")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


async def _chunks(data: bytes):
    yield data


# Federation off: what is not cached here cannot be fetched, so it is not found.
@pytest.mark.parametrize("config_overrides", [{"federation": {"enabled": False}}])
async def test_cached_remote_media_is_served_and_purged_on_its_own(api, services):
    alice = await api.register("alice")
    repo = api.client.app[MEDIA]
    local = await upload_ok(alice, b"local bytes", "text/plain")
    image = image_bytes(300, 200, "PNG")
    cached = await repo.store_remote("remote.example", "RemoteMedia1", _chunks(image), "image/png", "cat.png")
    assert (cached.origin, cached.media_id, cached.size) == ("remote.example", "RemoteMedia1", len(image))

    status, body, headers = await download_raw(api, f"{DOWNLOAD}/remote.example/RemoteMedia1", alice.access_token)
    assert (status, body) == (200, image)
    assert headers["Content-Disposition"] == "inline; filename=cat.png"
    status, body, headers = await download_raw(
        api, f"{THUMBNAIL}/remote.example/RemoteMedia1?width=32&height=32&method=crop", alice.access_token
    )
    assert status == 200 and headers["Content-Type"] == "image/png"
    # Remote media cached after the freeze is new media for the legacy routes.
    r = await api.request("GET", f"{LEGACY_DOWNLOAD}/remote.example/RemoteMedia1")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

    # Purging remote media not used since a time leaves local media alone.
    assert await repo.purge_remote_cache(now_ms() - 3_600_000) == 0
    assert await repo.purge_remote_cache(now_ms() + 1) == 1
    r = await alice.get(f"{DOWNLOAD}/remote.example/RemoteMedia1")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert await services.db.fetchval("SELECT count(*) FROM media_thumbnails") == 0
    assert len(stored_files(services)) == 1
    status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{local}", alice.access_token)
    assert (status, body) == (200, b"local bytes")
