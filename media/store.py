"""Content-addressed files under data_dir/media.

A file is named by the SHA-256 of its bytes (content/ab/cd/abcd...), so the
same bytes are stored once however often they are uploaded. Bytes arrive in a
temporary file in tmp/ (the same filesystem, so the final rename is atomic),
are hashed and counted as they stream in, fsynced, and only then renamed into
place: a crash leaves either the whole file or none, never a torn one.

Which rows reference a hash is the database's business (homeserver.storage.media);
callers add and drop references under that hash's lock, then call `delete`
when nothing names it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import AsyncIterator

_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Bytes gathered before one write (and hash update) in a worker thread: large
# enough that thread hand-offs cost little, small enough to bound memory.
_WRITE_BATCH = 1 << 20
# Temporary files older than this at start are leftovers of a crash.
_STALE_TEMP_SECONDS = 24 * 3600


class ContentTooLarge(Exception):
    """More bytes arrived than the caller allowed."""


class Incoming:
    """Bytes being received into a temporary file, hashed and counted on the way."""

    def __init__(self, path: Path, max_bytes: int | None):
        self.path = path
        self.max_bytes = max_bytes
        self.size = 0
        self.sha256: str | None = None
        self._hash = hashlib.sha256()
        self._file = open(path, "xb")
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def write(self, chunk: bytes) -> None:
        """Take a chunk; ContentTooLarge as soon as the total passes the limit."""
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise ContentTooLarge()
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= _WRITE_BATCH:
            await self._flush()

    async def write_all(self, chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            await self.write(chunk)

    async def finish(self) -> str:
        """Write what is left, fsync and close; return the hex SHA-256."""
        await self._flush()
        await asyncio.to_thread(self._sync_and_close)
        self.sha256 = self._hash.hexdigest()
        return self.sha256

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending, self._pending_size = self._pending, [], 0
        await asyncio.to_thread(self._write_batch, batch)

    def _write_batch(self, batch: list[bytes]) -> None:
        for chunk in batch:
            self._hash.update(chunk)
            self._file.write(chunk)

    def _sync_and_close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def _abandon(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class ContentStore:
    def __init__(self, root: Path):
        self.root = root
        self.content_dir = root / "content"
        self.tmp_dir = root / "tmp"

    def prepare(self) -> None:
        """Create the directories and remove temporary files a crash left behind."""
        self.content_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - _STALE_TEMP_SECONDS
        for leftover in self.tmp_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def path(self, sha256: str) -> Path:
        if not _HEX_SHA256.match(sha256):
            raise ValueError("not a hex SHA-256")
        return self.content_dir / sha256[0:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    @contextlib.asynccontextmanager
    async def incoming(self, max_bytes: int | None = None) -> AsyncIterator[Incoming]:
        """A temporary file to stream into; removed on exit unless committed.

        Whatever ends the block (an error, a client that went away, a
        cancellation) leaves no partial file behind.
        """
        path = self.tmp_dir / f"upload-{secrets.token_hex(12)}"
        incoming = await asyncio.to_thread(Incoming, path, max_bytes)
        try:
            yield incoming
        finally:
            # Runs in this thread: a cancelled task must still remove its file.
            incoming._abandon()

    async def commit(self, incoming: Incoming) -> None:
        """Move a finished file into place. Call it holding the hash's lock."""
        assert incoming.sha256 is not None, "finish() the file first"
        await asyncio.to_thread(self._commit, incoming.path, incoming.sha256, incoming.size)

    def _commit(self, temp: Path, sha256: str, size: int) -> None:
        final = self.path(sha256)
        try:
            if final.stat().st_size == size:
                return  # the same bytes are already stored; the temp file is removed on exit
        except FileNotFoundError:
            pass
        created = _make_dirs(final.parent)
        os.replace(temp, final)
        _fsync_dir(final.parent)
        for directory in created:
            _fsync_dir(directory.parent)

    async def delete(self, sha256: str) -> None:
        """Remove a file no row references any more. Call it holding the hash's lock."""
        await asyncio.to_thread(self._delete, sha256)

    def _delete(self, sha256: str) -> None:
        path = self.path(sha256)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(path.parent)


def _make_dirs(directory: Path) -> list[Path]:
    """mkdir -p; return the directories it created, deepest last."""
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
            created.append(path)
        except FileExistsError:
            pass
    return created


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
