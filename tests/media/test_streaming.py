"""Uploads and downloads stream: a 200 MB file passes through without the process
holding more than a few megabytes of it (measured with tracemalloc, not timed)."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest

from tests.media.media_helpers import DOWNLOAD, SERVER, UPLOAD, stored_files

SIZE = 200 * 1024 * 1024
CHUNK = 64 * 1024
# What the whole process may allocate at the peak, client and server together:
# a few megabytes for buffers, nothing proportional to the 200 MB.
PEAK_LIMIT = 8 * 1024 * 1024


def _chunk(i: int) -> bytes:
    return i.to_bytes(4, "big") * (CHUNK // 4)


@pytest.mark.parametrize("config_overrides", [{"media": {"max_upload_bytes": 300 * 1024 * 1024}}])
async def test_large_upload_and_download_stream_in_bounded_memory(api, services):
    alice = await api.register("alice")
    headers = {"Authorization": f"Bearer {alice.access_token}", "Content-Type": "video/mp4"}
    sent = hashlib.sha256()
    chunks = {i: _chunk(i) for i in range(251)}  # made before measuring

    async def body():
        for i in range(SIZE // CHUNK):
            sent.update(chunks[i % 251])
            yield chunks[i % 251]

    tracemalloc.start()
    try:
        async with api.client.post(UPLOAD, data=body(), headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            media_id = (await resp.json())["content_uri"].rsplit("/", 1)[1]
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        received = hashlib.sha256()
        size = 0
        async with api.client.get(f"{DOWNLOAD}/{SERVER}/{media_id}", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(SIZE)
            async for chunk in resp.content.iter_chunked(CHUNK):
                received.update(chunk)
                size += len(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert size == SIZE
    assert received.hexdigest() == sent.hexdigest()
    [path] = stored_files(services)
    assert path.name == sent.hexdigest() and path.stat().st_size == SIZE
    assert upload_peak < PEAK_LIMIT, f"upload peak {upload_peak / 2**20:.1f} MiB"
    assert download_peak < PEAK_LIMIT, f"download peak {download_peak / 2**20:.1f} MiB"
