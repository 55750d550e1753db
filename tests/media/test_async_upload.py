"""POST /_matrix/media/v1/create and PUT /_matrix/media/v3/upload/{serverName}/{mediaId}."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.services.clock import now_ms
from tests.media.media_helpers import CREATE, DOWNLOAD, SERVER, download_raw, media_rows, stored_files


async def _create(user) -> tuple[str, int]:
    r = await user.post(CREATE)
    assert r.status == 200, r
    server, media_id = r["content_uri"].removeprefix("mxc://").split("/")
    assert server == SERVER
    return media_id, r["unused_expires_at"]


async def _put(user, media_id: str, data: bytes, content_type: str = "text/plain", server: str = SERVER, **params):
    return await user.put(
        f"/_matrix/media/v3/upload/{server}/{media_id}", raw=data,
        headers={"Content-Type": content_type}, params=params or None,
    )


async def test_create_then_upload_then_download(api):
    alice = await api.register("alice")
    before = now_ms()
    media_id, expires = await _create(alice)
    # The spec recommends 24 hours for unused ids.
    assert before + 24 * 3600 * 1000 <= expires <= now_ms() + 24 * 3600 * 1000
    r = await _put(alice, media_id, b"late bytes", filename="notes.txt")
    assert (r.status, r.body) == (200, {})
    status, body, headers = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
    assert (status, body) == (200, b"late bytes")
    assert headers["Content-Disposition"] == "inline; filename=notes.txt"


async def test_create_needs_an_access_token(api, services):
    r = await api.request("POST", CREATE, {})
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")
    assert await media_rows(services) == 0


async def test_only_the_creator_may_upload(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    media_id, _ = await _create(alice)
    r = await _put(bob, media_id, b"bob's bytes")
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r
    assert stored_files(services) == []
    r = await _put(alice, media_id, b"alice's bytes")
    assert r.status == 200


async def test_media_cannot_be_overwritten(api, services):
    alice = await api.register("alice")
    media_id, _ = await _create(alice)
    assert (await _put(alice, media_id, b"first")).status == 200
    r = await _put(alice, media_id, b"second")
    assert (r.status, r.errcode) == (409, "M_CANNOT_OVERWRITE_MEDIA"), r
    status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
    assert body == b"first"
    assert len(stored_files(services)) == 1


async def test_ids_from_plain_uploads_cannot_be_uploaded_to(api):
    alice = await api.register("alice")
    r = await alice.post("/_matrix/media/v3/upload", raw=b"done", headers={"Content-Type": "text/plain"})
    media_id = r["content_uri"].rsplit("/", 1)[1]
    r = await _put(alice, media_id, b"again")
    assert (r.status, r.errcode) == (409, "M_CANNOT_OVERWRITE_MEDIA")


@pytest.mark.parametrize("server, media_id", [
    (SERVER, "neverCreatedAtAll"),
    ("other.example", "someMediaId"),
])
async def test_upload_to_unknown_ids_is_not_found(api, services, server, media_id):
    alice = await api.register("alice")
    r = await _put(alice, media_id, b"bytes", server=server)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), r
    assert stored_files(services) == []


async def test_expired_ids_cannot_be_uploaded_to_and_are_forgotten(api, services):
    alice = await api.register("alice")
    media_id, _ = await _create(alice)
    await services.db.execute("UPDATE media SET unused_expires_ts = $1 WHERE media_id = $2", now_ms() - 1, media_id)
    r = await _put(alice, media_id, b"too late")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), r
    status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
    assert status == 404
    # The next /create sweeps expired ids away.
    await _create(alice)
    assert await services.db.fetchval("SELECT count(*) FROM media WHERE media_id = $1", media_id) == 0


@pytest.mark.parametrize("config_overrides", [{"media": {"max_pending_uploads": 2}}])
async def test_pending_uploads_per_user_are_limited(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    first, _ = await _create(alice)
    await _create(alice)
    r = await alice.post(CREATE)
    assert (r.status, r.errcode) == (429, "M_LIMIT_EXCEEDED"), r
    await _create(bob)
    # Uploading to one frees a place.
    assert (await _put(alice, first, b"x")).status == 200
    await _create(alice)


async def test_download_before_upload_times_out_with_not_yet_uploaded(api):
    alice = await api.register("alice")
    media_id, _ = await _create(alice)
    r = await alice.get(f"{DOWNLOAD}/{SERVER}/{media_id}", params={"timeout_ms": "0"})
    assert (r.status, r.errcode) == (504, "M_NOT_YET_UPLOADED"), r
    r = await alice.get(f"/_matrix/client/v1/media/thumbnail/{SERVER}/{media_id}",
                        params={"timeout_ms": "0", "width": "32", "height": "32"})
    assert (r.status, r.errcode) == (504, "M_NOT_YET_UPLOADED"), r


async def test_download_waits_for_the_upload(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    media_id, _ = await _create(alice)
    waiting = asyncio.create_task(
        download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}?timeout_ms=30000", bob.access_token)
    )
    await asyncio.sleep(0.1)
    assert not waiting.done()
    assert (await _put(alice, media_id, b"worth the wait")).status == 200
    status, body, _ = await waiting
    assert (status, body) == (200, b"worth the wait")


async def test_put_bad_input_is_refused_before_anything_is_stored(api, services):
    alice = await api.register("alice")
    media_id, _ = await _create(alice)
    r = await _put(alice, media_id, b"x", content_type="not a type")
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await _put(alice, media_id, b"x", filename="../escape")
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await _put(alice, "bad.id", b"x")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert stored_files(services) == []
    # The id is still free to use.
    assert (await _put(alice, media_id, b"good")).status == 200
