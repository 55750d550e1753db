"""Media benchmark: prints figures, asserts nothing.

    .venv/bin/python -m tests.benchmarks.bench_media [--database DSN] [--size-mib 200]

Starts the real server process (on a fresh database in the given PostgreSQL, or
the embedded one) and measures:
  - upload and download throughput of one large random file (200 MiB), streamed
    from and to disk on the client side, the download checked by SHA-256;
  - the server's resident memory: idle, the peak sampled every 10 ms during the
    transfers (VmRSS), and the kernel's high-water mark (VmHWM);
  - thumbnails of a 12-megapixel JPEG (4000x3000): the upload, which makes the
    standard sizes, a size made on demand, a cached one, and the same work
    timed in-process without HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import aiohttp
import asyncpg
from PIL import Image

from homeserver.config import MediaConfig
from media import thumbnails
from tests.e2e.server_process import ServerProcess

MIB = 1024 * 1024
CHUNK = MIB


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's VmRSS in a thread, keeping the highest value seen."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, proc_status_kib(self.pid, "VmRSS"))
            time.sleep(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def write_random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            chunk = os.urandom(min(8 * MIB, remaining))
            digest.update(chunk)
            f.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def twelve_megapixel_jpeg() -> bytes:
    """A 4000x3000 photo-like JPEG: smooth gradients with noise, as a camera makes."""
    gradient = Image.linear_gradient("L").resize((4000, 3000))
    noise = Image.effect_noise((4000, 3000), 40)
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session = session
        self.base = base
        self.headers: dict[str, str] = {}

    async def register(self, name: str) -> None:
        async with self.session.post(self.base + "/_matrix/client/v3/register", json={
            "username": name, "password": "benchmark password", "auth": {"type": "m.login.dummy"},
        }) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"register: {r.status} {data}")
        self.headers = {"Authorization": f"Bearer {data['access_token']}"}

    async def upload(self, data, content_type: str) -> str:
        async with self.session.post(
            self.base + "/_matrix/media/v3/upload", data=data,
            headers={**self.headers, "Content-Type": content_type},
        ) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"upload: {r.status} {body}")
            return body["content_uri"].removeprefix("mxc://")

    async def download(self, path: str) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        async with self.session.get(self.base + path, headers=self.headers) as r:
            if r.status != 200:
                raise RuntimeError(f"GET {path}: {r.status} {await r.text()}")
            async for chunk in r.content.iter_chunked(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()


async def transfer(client: Client, pid: int, directory: Path, size: int) -> dict[str, float]:
    source = directory / "big.bin"
    expected = write_random_file(source, size)
    idle_kib = proc_status_kib(pid, "VmRSS")
    with RssSampler(pid) as sampler:
        start = time.perf_counter()
        with open(source, "rb") as f:
            mxc = await client.upload(f, "application/octet-stream")
        upload_s = time.perf_counter() - start
        start = time.perf_counter()
        received, digest = await client.download(f"/_matrix/client/v1/media/download/{mxc}")
        download_s = time.perf_counter() - start
    if (received, digest) != (size, expected):
        raise RuntimeError("the download differs from the upload")
    source.unlink()
    return {
        "upload_mib_s": size / MIB / upload_s, "download_mib_s": size / MIB / download_s,
        "upload_s": upload_s, "download_s": download_s,
        "idle_mib": idle_kib / 1024, "peak_rss_mib": sampler.peak_kib / 1024,
        "hwm_mib": proc_status_kib(pid, "VmHWM") / 1024,
    }


async def thumbnails_over_http(client: Client, jpeg: bytes) -> dict[str, float]:
    start = time.perf_counter()
    mxc = await client.upload(jpeg, "image/jpeg")
    upload_s = time.perf_counter() - start
    base = f"/_matrix/client/v1/media/thumbnail/{mxc}"
    start = time.perf_counter()
    await client.download(base + "?width=1024&height=768&method=scale")
    on_demand_s = time.perf_counter() - start
    cached = []
    for _ in range(20):
        start = time.perf_counter()
        await client.download(base + "?width=320&height=240&method=scale")
        cached.append(time.perf_counter() - start)
    return {"upload_s": upload_s, "on_demand_s": on_demand_s, "cached_ms": statistics.median(cached) * 1000}


def thumbnails_in_process(jpeg: bytes, directory: Path) -> dict[str, float]:
    path = directory / "photo.jpg"
    path.write_bytes(jpeg)
    config = MediaConfig()
    standard = [thumbnails.Request(s.width, s.height, s.method) for s in config.thumbnail_sizes]
    runs_all, runs_one = [], []
    for _ in range(3):
        start = time.perf_counter()
        thumbnails.render(str(path), standard, config.max_image_pixels)
        runs_all.append(time.perf_counter() - start)
        start = time.perf_counter()
        thumbnails.render(str(path), [thumbnails.Request(320, 240, "scale")], config.max_image_pixels)
        runs_one.append(time.perf_counter() - start)
    return {"standard_s": min(runs_all), "one_s": min(runs_one), "sizes": len(standard)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", help="PostgreSQL DSN of a server to create a fresh database in")
    parser.add_argument("--size-mib", type=int, default=200)
    args = parser.parse_args()

    dsn = None
    if args.database:
        name = f"hs_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(args.database)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        dsn = urlunparse(urlparse(args.database)._replace(path="/" + name))

    size = args.size_mib * MIB
    jpeg = twelve_megapixel_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        server = ServerProcess(
            directory / "server", dsn, server_name="bench.local",
            media={"max_upload_bytes": size + MIB, "upload_rate_limit": {"per_second": 100, "burst": 100}},
        )
        server.start(timeout=120)
        try:
            await asyncio.sleep(1)
            pid = server.process.pid
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                client = Client(session, server.base_url)
                await client.register("photographer")
                big = await transfer(client, pid, directory, size)
                thumbs = await thumbnails_over_http(client, jpeg)
        finally:
            server.stop()
        local = thumbnails_in_process(jpeg, directory)

    print(f"{args.size_mib} MiB random file, streamed over HTTP on 127.0.0.1:")
    print(f"  upload   {big['upload_mib_s']:.0f} MiB/s ({big['upload_s']:.2f} s, hashed, fsynced, renamed into place)")
    print(f"  download {big['download_mib_s']:.0f} MiB/s ({big['download_s']:.2f} s)")
    print(f"server resident memory: idle {big['idle_mib']:.0f} MiB, peak during the transfers "
          f"{big['peak_rss_mib']:.0f} MiB (VmRSS every 10 ms), high-water mark {big['hwm_mib']:.0f} MiB (VmHWM)")
    print(f"12-megapixel JPEG (4000x3000, {len(jpeg) / MIB:.1f} MiB):")
    print(f"  upload incl. the {local['sizes']} standard thumbnails: {thumbs['upload_s']:.2f} s")
    print(f"  thumbnail 1024x768 made on demand: {thumbs['on_demand_s'] * 1000:.0f} ms; "
          f"cached 320x240: {thumbs['cached_ms']:.1f} ms (median of 20)")
    print(f"  in-process, no HTTP: {local['sizes']} standard sizes from one decode {local['standard_s'] * 1000:.0f} ms, "
          f"one 320x240 thumbnail {local['one_s'] * 1000:.0f} ms (best of 3)")

    if args.database:
        admin = await asyncpg.connect(args.database)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
