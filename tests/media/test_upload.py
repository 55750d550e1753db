"""POST /_matrix/media/v3/upload: storage on disk, limits, and every bad input."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.media.media_helpers import (
    DOWNLOAD, SERVER, UPLOAD, download_raw, media_rows, raw_http, read_status, request_head,
    stored_files, temp_files, upload, upload_ok,
)

SMALL_LIMIT = {"media": {"max_upload_bytes": 1000}}


async def test_upload_stores_bytes_by_hash_and_metadata(api, services):
    alice = await api.register("alice")
    data = b"family photo bytes " * 100
    r = await upload(alice, data, "image/jpeg", filename="beach.jpg")
    assert r.status == 200, r
    assert r["content_uri"].startswith(f"mxc://{SERVER}/")
    media_id = r["content_uri"].rsplit("/", 1)[1]

    digest = hashlib.sha256(data).hexdigest()
    [path] = stored_files(services)
    assert path.name == digest
    assert path.parent.name == digest[2:4] and path.parent.parent.name == digest[:2]
    assert path.read_bytes() == data
    assert temp_files(services) == []

    row = await services.db.fetchrow("SELECT * FROM media WHERE media_id = $1", media_id)
    assert row["user_id"] == alice.user_id
    assert (row["sha256"], row["size"]) == (digest, len(data))
    assert (row["content_type"], row["upload_name"]) == ("image/jpeg", "beach.jpg")
    assert row["uploaded_ts"] is not None


async def test_identical_bytes_are_stored_once(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    first = await upload_ok(alice, b"the same bytes", "text/plain")
    second = await upload_ok(bob, b"the same bytes", "text/plain", filename="copy.txt")
    assert first != second
    assert len(stored_files(services)) == 1
    for media_id in (first, second):
        status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
        assert (status, body) == (200, b"the same bytes")


async def test_empty_upload_is_allowed(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"", "text/plain")
    status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
    assert (status, body) == (200, b"")


async def test_upload_needs_an_access_token(api, services):
    r = await api.request("POST", UPLOAD, raw=b"data", headers={"Content-Type": "text/plain"})
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")
    r = await api.request("POST", UPLOAD, raw=b"data", token="nonsense", headers={"Content-Type": "text/plain"})
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
    assert await media_rows(services) == 0
    assert stored_files(services) == []


async def test_missing_content_type_defaults_to_octet_stream(api, services):
    """Spec v1.12: Content-Type is optional and defaults to application/octet-stream."""
    alice = await api.register("alice")
    r = await upload(alice, b"\x00\x01binary", content_type=None)
    assert r.status == 200, r
    media_id = r["content_uri"].rsplit("/", 1)[1]
    status, _, headers = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"


async def test_malformed_content_type_is_refused(api, services):
    alice = await api.register("alice")
    for content_type in ("garbage", "image/", "/png", "image/png/extra", "ima ge/png", "image/pngé"):
        r = await upload(alice, b"data", content_type)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), content_type
    assert await media_rows(services) == 0
    assert stored_files(services) == []


async def test_file_name_with_a_path_or_control_characters_is_refused(api, services):
    alice = await api.register("alice")
    for filename in ("../../etc/passwd", "a/b.txt", "a\\b.txt", "..", ".", "bad\x00name", "tab\tname", "x" * 256):
        r = await upload(alice, b"data", "text/plain", filename=filename)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), filename
    assert await media_rows(services) == 0
    assert stored_files(services) == []


async def test_unicode_file_name_is_kept(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"data", "text/plain", filename="Grand-mère été.txt")
    _, _, headers = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''Grand-m%C3%A8re%20%C3%A9t%C3%A9.txt"


@pytest.mark.parametrize("config_overrides", [SMALL_LIMIT])
async def test_upload_at_the_limit_is_accepted(api, services):
    alice = await api.register("alice")
    await upload_ok(alice, b"x" * 1000)
    assert len(stored_files(services)) == 1


@pytest.mark.parametrize("config_overrides", [SMALL_LIMIT])
async def test_oversized_upload_with_content_length_is_refused(api, services):
    alice = await api.register("alice")
    r = await upload(alice, b"x" * 1001)
    assert (r.status, r.errcode) == (413, "M_TOO_LARGE"), r
    assert await media_rows(services) == 0
    assert stored_files(services) == [] and temp_files(services) == []


@pytest.mark.parametrize("config_overrides", [SMALL_LIMIT])
async def test_oversized_upload_is_refused_before_the_body_is_sent(api, services):
    """A Content-Length past the limit is answered 413 at once: the server does not wait
    for (or store) the gigabyte the client announced."""
    alice = await api.register("alice")
    head = request_head("POST", UPLOAD, alice.access_token, {
        "Content-Type": "application/octet-stream", "Content-Length": str(10**9),
    })
    reader, writer = await raw_http(api, head, b"x" * 100)
    try:
        status, response = await asyncio.wait_for(read_status(reader), 30)
    finally:
        writer.close()
    assert status == 413
    assert await media_rows(services) == 0
    assert stored_files(services) == [] and temp_files(services) == []


@pytest.mark.parametrize("config_overrides", [SMALL_LIMIT])
async def test_expect_continue_is_refused_before_the_body(api, services):
    alice = await api.register("alice")
    head = request_head("POST", UPLOAD, alice.access_token, {
        "Content-Type": "application/octet-stream", "Content-Length": "5000", "Expect": "100-continue",
    })
    reader, writer = await raw_http(api, head)
    try:
        status, response = await asyncio.wait_for(read_status(reader), 30)
    finally:
        writer.close()
    assert status == 413
    assert b"M_TOO_LARGE" in response + await asyncio.wait_for(reader.read(200), 30)


async def test_expect_continue_within_the_limit_goes_ahead(api, services):
    alice = await api.register("alice")
    head = request_head("POST", UPLOAD, alice.access_token, {
        "Content-Type": "text/plain", "Content-Length": "5", "Expect": "100-continue",
    })
    reader, writer = await raw_http(api, head)
    try:
        status, _ = await asyncio.wait_for(read_status(reader), 30)
        assert status == 100
        writer.write(b"hello")
        status, _ = await asyncio.wait_for(read_status(reader), 30)
        assert status == 200
    finally:
        writer.close()
    assert await media_rows(services) == 1


@pytest.mark.parametrize("config_overrides", [SMALL_LIMIT])
async def test_oversized_chunked_upload_is_cut_off(api, services):
    """Without Content-Length the bytes are counted as they arrive."""
    alice = await api.register("alice")
    sent = 0

    async def body():
        nonlocal sent
        for _ in range(100):
            sent += 100
            yield b"y" * 100

    async with api.client.post(UPLOAD, data=body(), headers={
        "Authorization": f"Bearer {alice.access_token}", "Content-Type": "application/octet-stream",
    }) as resp:
        assert resp.status == 413
        assert (await resp.json())["errcode"] == "M_TOO_LARGE"
    assert await media_rows(services) == 0
    assert stored_files(services) == [] and temp_files(services) == []


async def test_client_disconnecting_mid_upload_leaves_nothing(api, services):
    alice = await api.register("alice")
    head = request_head("POST", UPLOAD, alice.access_token, {
        "Content-Type": "application/octet-stream", "Content-Length": str(2 * 1024 * 1024),
    })
    reader, writer = await raw_http(api, head, b"z" * (1024 * 1024))
    # The upload has begun: its temporary file exists.
    for _ in range(500):
        if temp_files(services):
            break
        await asyncio.sleep(0.01)
    assert temp_files(services), "the upload never started"
    writer.close()
    await writer.wait_closed()
    # Once the server notices, the temporary file goes; no file or row is kept.
    for _ in range(1000):
        if not temp_files(services):
            break
        await asyncio.sleep(0.01)
    assert temp_files(services) == []
    assert stored_files(services) == []
    assert await media_rows(services) == 0
    # The server is fine afterwards.
    await upload_ok(alice, b"next upload")


@pytest.mark.parametrize("config_overrides", [{"media": {"upload_rate_limit": {"per_second": 0.001, "burst": 2}}}])
async def test_uploads_are_rate_limited_per_user(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    await upload_ok(alice, b"one")
    await upload_ok(alice, b"two")
    r = await upload(alice, b"three")
    assert (r.status, r.errcode) == (429, "M_LIMIT_EXCEEDED"), r
    assert r["retry_after_ms"] > 0
    # Another user has a bucket of their own.
    await upload_ok(bob, b"four")
    assert await media_rows(services) == 3


@pytest.mark.parametrize("config_overrides", [{"media": {"storage_quota_bytes": 100, "admin_contact": "mailto:mum@example.org"}}])
async def test_storage_quota_refuses_uploads_that_would_pass_it(api, services):
    alice = await api.register("alice")
    await upload_ok(alice, b"a" * 60)
    r = await upload(alice, b"b" * 60)
    assert (r.status, r.errcode) == (403, "M_RESOURCE_LIMIT_EXCEEDED"), r
    assert r["admin_contact"] == "mailto:mum@example.org"
    assert await media_rows(services) == 1
    assert len(stored_files(services)) == 1 and temp_files(services) == []
    # What still fits is accepted.
    await upload_ok(alice, b"c" * 40)


@pytest.mark.parametrize("config_overrides", [{"media": {"storage_quota_bytes": 100}}])
async def test_storage_quota_counts_bytes_stored_once(api, services):
    """Without Content-Length the quota is checked on what arrived; bytes already
    stored take no more room and are accepted even on a full store."""
    alice = await api.register("alice")
    await upload_ok(alice, b"a" * 60)

    async def body(data: bytes):
        yield data

    headers = {"Authorization": f"Bearer {alice.access_token}", "Content-Type": "text/plain"}
    async with api.client.post(UPLOAD, data=body(b"b" * 60), headers=headers) as resp:
        assert resp.status == 403
        assert (await resp.json())["errcode"] == "M_RESOURCE_LIMIT_EXCEEDED"
    async with api.client.post(UPLOAD, data=body(b"a" * 60), headers=headers) as resp:
        assert resp.status == 200
    assert await media_rows(services) == 2
    assert len(stored_files(services)) == 1 and temp_files(services) == []


async def test_config_reports_the_upload_limit(api):
    alice = await api.register("alice")
    r = await alice.get("/_matrix/client/v1/media/config")
    assert r.status == 200 and r.body == {"m.upload.size": 100 * 1024 * 1024}
    r = await alice.get("/_matrix/media/v3/config")
    assert r.status == 200 and r.body == {"m.upload.size": 100 * 1024 * 1024}
    r = await api.request("GET", "/_matrix/client/v1/media/config")
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")


async def test_concurrent_identical_uploads_share_one_file(api, services):
    alice = await api.register("alice")
    data = b"the same holiday video" * 5000
    media_ids = await asyncio.gather(*(upload_ok(alice, data, "video/mp4") for _ in range(8)))
    assert len(set(media_ids)) == 8
    [path] = stored_files(services)
    assert path.read_bytes() == data
    assert temp_files(services) == []
    assert await services.db.fetchval("SELECT count(DISTINCT sha256) FROM media") == 1
