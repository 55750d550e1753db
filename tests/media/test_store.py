"""The content store on its own: temporary files, atomic placement, crash leftovers."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from media.store import ContentStore, ContentTooLarge


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_stream_is_hashed_counted_and_placed(tmp_path):
    store = ContentStore(tmp_path / "media")
    store.prepare()
    async with store.incoming(max_bytes=100) as incoming:
        await incoming.write_all(_chunks(b"hello ", b"world"))
        sha256 = await incoming.finish()
        assert list(store.tmp_dir.iterdir()) == [incoming.path]
        await store.commit(incoming)
    assert sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert incoming.size == 11
    assert store.path(sha256).read_bytes() == b"hello world"
    assert list(store.tmp_dir.iterdir()) == []


async def test_too_many_bytes_stop_the_stream_and_leave_nothing(tmp_path):
    store = ContentStore(tmp_path / "media")
    store.prepare()
    with pytest.raises(ContentTooLarge):
        async with store.incoming(max_bytes=10) as incoming:
            await incoming.write_all(_chunks(b"12345", b"67890", b"1"))
    assert incoming.size == 11
    assert list(store.tmp_dir.iterdir()) == []
    assert list(store.content_dir.iterdir()) == []


async def test_an_error_mid_stream_leaves_no_temporary_file(tmp_path):
    store = ContentStore(tmp_path / "media")
    store.prepare()

    async def broken():
        yield b"some bytes"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        async with store.incoming() as incoming:
            await incoming.write_all(broken())
    assert list(store.tmp_dir.iterdir()) == []


async def test_same_bytes_twice_keep_one_file(tmp_path):
    store = ContentStore(tmp_path / "media")
    store.prepare()
    for _ in range(2):
        async with store.incoming() as incoming:
            await incoming.write(b"same")
            sha256 = await incoming.finish()
            await store.commit(incoming)
    assert [p for p in store.content_dir.rglob("*") if p.is_file()] == [store.path(sha256)]
    assert list(store.tmp_dir.iterdir()) == []
    await store.delete(sha256)
    assert not store.exists(sha256)
    await store.delete(sha256)  # deleting twice is harmless


async def test_prepare_removes_only_stale_temporary_files(tmp_path):
    store = ContentStore(tmp_path / "media")
    store.prepare()
    stale = store.tmp_dir / "upload-crashed"
    stale.write_bytes(b"half an upload")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    fresh = store.tmp_dir / "upload-in-progress"
    fresh.write_bytes(b"still arriving")
    store.prepare()
    assert list(store.tmp_dir.iterdir()) == [fresh]


@pytest.mark.parametrize("name", ["../../etc/passwd", "ABCDEF" * 10 + "ABCD", "0" * 63, ""])
def test_only_hex_sha256_names_a_file(tmp_path, name):
    store = ContentStore(tmp_path / "media")
    with pytest.raises(ValueError):
        store.path(name)
