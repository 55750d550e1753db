"""GET /_matrix/client/v1/media/thumbnail: sizes, methods, caching, animation, EXIF,
and images that cannot be thumbnailed."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from PIL import Image

from tests.media.media_helpers import (
    DOWNLOAD, SERVER, THUMBNAIL, download_raw, image_bytes, open_image, stored_files, upload, upload_ok,
)


async def _thumbnail(api, user, media_id: str, width: int, height: int, method: str | None = None, **params):
    query = {"width": str(width), "height": str(height), **params}
    if method:
        query["method"] = method
    path = f"{THUMBNAIL}/{SERVER}/{media_id}?" + "&".join(f"{k}={v}" for k, v in query.items())
    return await download_raw(api, path, user.access_token)


async def _thumbnail_rows(services, media_id: str) -> list[tuple[int, int, str, str, bool]]:
    rows = await services.db.fetch(
        "SELECT width, height, method, content_type, animated FROM media_thumbnails WHERE media_id = $1"
        " ORDER BY width, height, method", media_id,
    )
    return [tuple(row) for row in rows]


async def test_standard_sizes_are_made_at_upload(api, services):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(1000, 800), "image/jpeg")
    assert await _thumbnail_rows(services, media_id) == [
        (32, 32, "crop", "image/jpeg", False),
        (96, 96, "crop", "image/jpeg", False),
        (300, 240, "scale", "image/jpeg", False),
        (600, 480, "scale", "image/jpeg", False),
        (750, 600, "scale", "image/jpeg", False),
    ]
    # The original and five thumbnails, each a file in the content store.
    assert len(stored_files(services)) == 6


async def test_twelve_megapixel_photo(api, services):
    # Random detail, enlarged: a 12-megapixel JPEG of a few megabytes, quick to make.
    photo = Image.frombytes("RGB", (500, 375), os.urandom(500 * 375 * 3)).resize((4000, 3000))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=85)
    alice = await api.register("alice")
    media_id = await upload_ok(alice, buffer.getvalue(), "image/jpeg", filename="IMG_0001.jpg")
    made = await _thumbnail_rows(services, media_id)
    assert len(made) == 5

    for width, height, method in [(96, 96, "crop"), (32, 32, "crop"), (320, 240, "scale"), (800, 600, "scale")]:
        status, body, headers = await _thumbnail(api, alice, media_id, width, height, method)
        assert status == 200
        assert headers["Content-Type"] == "image/jpeg"
        assert headers["Content-Disposition"] == "inline; filename=thumbnail.jpg"
        thumb = open_image(body)
        assert (thumb.format, thumb.size) == ("JPEG", (width, height))
    # All answered from the thumbnails made at upload.
    assert await _thumbnail_rows(services, media_id) == made


async def test_other_sizes_are_made_once_and_cached(api, services):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(1000, 800), "image/jpeg")
    status, body, _ = await _thumbnail(api, alice, media_id, 200, 100, "crop")
    assert status == 200 and open_image(body).size == (200, 100)
    rows = await _thumbnail_rows(services, media_id)
    assert (200, 100, "crop", "image/jpeg", False) in rows
    status, again, _ = await _thumbnail(api, alice, media_id, 200, 100, "crop")
    assert again == body
    assert await _thumbnail_rows(services, media_id) == rows


async def test_the_smallest_covering_thumbnail_is_served(api, services):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(1000, 800), "image/jpeg")
    before = await _thumbnail_rows(services, media_id)
    # 300x240 covers a 300x200 "scale" request (its width reaches the box).
    status, body, _ = await _thumbnail(api, alice, media_id, 300, 200, "scale")
    assert status == 200 and open_image(body).size == (300, 240)
    # "scale" is the default method.
    status, body, _ = await _thumbnail(api, alice, media_id, 500, 400)
    assert status == 200 and open_image(body).size == (600, 480)
    assert await _thumbnail_rows(services, media_id) == before


async def test_never_upscaled_small_images_are_served_as_they_are(api):
    alice = await api.register("alice")
    original = image_bytes(20, 20, "PNG")
    media_id = await upload_ok(alice, original, "image/png")
    for method in ("crop", "scale"):
        status, body, headers = await _thumbnail(api, alice, media_id, 640, 480, method)
        assert status == 200
        assert body == original
        assert headers["Content-Type"] == "image/png"
        assert headers["Content-Disposition"] == "inline; filename=thumbnail.png"


async def test_crop_of_a_narrow_image_keeps_the_requested_aspect(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(60, 400), "image/jpeg")
    status, body, _ = await _thumbnail(api, alice, media_id, 96, 96, "crop")
    # 60 pixels wide cannot give 96 without upscaling: the largest square there is.
    assert status == 200 and open_image(body).size == (60, 60)


async def test_png_with_transparency_keeps_it(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(500, 500, "PNG", mode="RGBA", color=(0, 0, 0, 0)), "image/png")
    status, body, headers = await _thumbnail(api, alice, media_id, 96, 96, "crop")
    assert status == 200 and headers["Content-Type"] == "image/png"
    thumb = open_image(body)
    assert (thumb.format, thumb.mode, thumb.size) == ("PNG", "RGBA", (96, 96))
    assert thumb.getpixel((0, 0))[3] == 0


async def test_exif_orientation_is_honoured(api):
    # Stored landscape, left half red, right half blue; EXIF orientation 6 says
    # "turn 90 degrees clockwise to display": upright it is portrait, red on top.
    stored = Image.new("RGB", (400, 200), (255, 0, 0))
    stored.paste((0, 0, 255), (200, 0, 400, 200))
    exif = stored.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif, quality=95)
    alice = await api.register("alice")
    media_id = await upload_ok(alice, buffer.getvalue(), "image/jpeg")
    status, body, _ = await _thumbnail(api, alice, media_id, 100, 100, "scale")
    thumb = open_image(body).convert("RGB")
    # The 320x240 "scale" thumbnail of the upright 200x400 image: portrait.
    assert status == 200 and thumb.size == (120, 240)
    top, bottom = thumb.getpixel((60, 20)), thumb.getpixel((60, 220))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def _animated_gif(frames: int = 5, size: tuple[int, int] = (200, 100)) -> bytes:
    images = [Image.new("RGB", size, (i * 50, 255 - i * 40, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
    return buffer.getvalue()


async def test_animated_thumbnails_when_asked(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, _animated_gif(), "image/gif")
    status, body, headers = await _thumbnail(api, alice, media_id, 64, 64, "scale", animated="true")
    assert status == 200 and headers["Content-Type"] == "image/webp"
    thumb = open_image(body)
    assert thumb.format == "WEBP" and thumb.n_frames == 5 and thumb.size == (64, 32)
    assert headers["Content-Disposition"] == "inline; filename=thumbnail.webp"
    # Not asked, or refused: a still image (the spec: MUST NOT animate when false).
    for params in ({}, {"animated": "false"}):
        status, body, headers = await _thumbnail(api, alice, media_id, 64, 64, "scale", **params)
        thumb = open_image(body)
        assert status == 200 and not getattr(thumb, "is_animated", False), params
        assert headers["Content-Type"] == "image/png"


async def test_small_animation_is_not_returned_when_animation_is_refused(api):
    alice = await api.register("alice")
    original = _animated_gif(size=(20, 20))
    media_id = await upload_ok(alice, original, "image/gif")
    status, body, _ = await _thumbnail(api, alice, media_id, 64, 64, "scale", animated="true")
    assert body == original
    status, body, _ = await _thumbnail(api, alice, media_id, 64, 64, "scale", animated="false")
    assert status == 200 and not getattr(open_image(body), "is_animated", False)


async def test_animated_true_on_a_still_image_gives_a_still_image(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(1000, 800), "image/jpeg")
    status, body, headers = await _thumbnail(api, alice, media_id, 96, 96, "crop", animated="true")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert open_image(body).size == (96, 96)


async def test_types_outside_the_safe_list_are_never_thumbnailed(api, services):
    alice = await api.register("alice")
    for content_type, data in [
        ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><script>alert(1)</script></svg>'),
        ("application/pdf", b"%PDF-1.4 not really"),
        ("image/bmp", image_bytes(100, 100, "BMP")),
        ("image/tiff", image_bytes(100, 100, "TIFF")),
    ]:
        media_id = await upload_ok(alice, data, content_type)
        assert await _thumbnail_rows(services, media_id) == [], content_type
        status, body, _ = await _thumbnail(api, alice, media_id, 32, 32, "crop")
        assert status == 400 and b'"M_UNKNOWN"' in body, content_type


async def test_corrupt_images_upload_but_thumbnails_fail_cleanly(api, services):
    alice = await api.register("alice")
    for data in [
        image_bytes(1000, 800)[:3000],  # truncated JPEG
        b"\xff\xd8\xff\xe0 this is not really a JPEG",
        b"<html>a web page claiming to be a JPEG</html>",
        b"",
    ]:
        media_id = await upload_ok(alice, data, "image/jpeg")
        status, body, _ = await _thumbnail(api, alice, media_id, 32, 32, "crop")
        assert status == 400 and b'"M_UNKNOWN"' in body, data[:20]
        assert await _thumbnail_rows(services, media_id) == []
        # The upload itself stands.
        status, downloaded, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
        assert (status, downloaded) == (200, data)


async def test_a_real_image_under_another_image_type_is_still_thumbnailed(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(300, 300, "PNG"), "image/jpeg")
    status, body, _ = await _thumbnail(api, alice, media_id, 32, 32, "crop")
    assert status == 200 and open_image(body).size == (32, 32)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size in a few bytes: a decompression bomb's header."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


async def test_decompression_bomb_is_refused(api, services):
    alice = await api.register("alice")
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 200
    media_id = await upload_ok(alice, bomb, "image/png")
    status, body, _ = await _thumbnail(api, alice, media_id, 32, 32, "crop")
    assert status == 413 and b'"M_TOO_LARGE"' in body
    assert await _thumbnail_rows(services, media_id) == []


@pytest.mark.parametrize("config_overrides", [{"media": {"max_image_pixels": 10_000}}])
async def test_images_past_the_pixel_limit_are_not_thumbnailed(api, services):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(200, 200), "image/jpeg")
    assert await _thumbnail_rows(services, media_id) == []
    status, body, _ = await _thumbnail(api, alice, media_id, 32, 32, "crop")
    assert status == 413 and b'"M_TOO_LARGE"' in body
    small = await upload_ok(alice, image_bytes(100, 100), "image/jpeg")
    status, _, _ = await _thumbnail(api, alice, small, 32, 32, "crop")
    assert status == 200


async def test_invalid_thumbnail_parameters(api, services):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(300, 300), "image/jpeg")
    before = await _thumbnail_rows(services, media_id)
    for query, errcode in [
        ("height=32", "M_MISSING_PARAM"),
        ("width=32", "M_MISSING_PARAM"),
        ("width=0&height=32", "M_INVALID_PARAM"),
        ("width=-5&height=32", "M_INVALID_PARAM"),
        ("width=abc&height=32", "M_INVALID_PARAM"),
        ("width=32&height=1.5", "M_INVALID_PARAM"),
        ("width=32&height=32&method=zoom", "M_INVALID_PARAM"),
        ("width=32&height=32&animated=maybe", "M_INVALID_PARAM"),
    ]:
        r = await alice.get(f"{THUMBNAIL}/{SERVER}/{media_id}?{query}")
        assert (r.status, r.errcode) == (400, errcode), query
    assert await _thumbnail_rows(services, media_id) == before


async def test_thumbnail_of_unknown_media_is_not_found(api):
    alice = await api.register("alice")
    r = await alice.get(f"{THUMBNAIL}/{SERVER}/nothingHere", params={"width": "32", "height": "32"})
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


async def test_huge_requested_size_is_bounded_by_the_image(api, services):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(1000, 800), "image/jpeg")
    status, body, _ = await _thumbnail(api, alice, media_id, 10**9, 10**9, "crop")
    assert status == 200 and open_image(body).size == (1000, 800)
    status, body, _ = await _thumbnail(api, alice, media_id, 10**9, 10**9, "scale")
    assert status == 200 and open_image(body).size == (1000, 800)


async def test_upload_response_is_not_held_up_by_a_bad_image(api):
    alice = await api.register("alice")
    r = await upload(alice, b"GIF89a garbage", "image/gif")
    assert r.status == 200


async def test_damaged_images_never_cause_a_server_error(api):
    """Bytes flipped and cut at random places in real PNG, GIF, WebP and JPEG files:
    every thumbnail request gets an image or a Matrix error, never a 500."""
    import random

    rng = random.Random(20240901)
    alice = await api.register("alice")
    originals = [
        ("image/png", image_bytes(120, 90, "PNG")),
        ("image/gif", _animated_gif(3, (60, 40))),
        ("image/webp", image_bytes(120, 90, "WEBP")),
        ("image/jpeg", image_bytes(120, 90, "JPEG")),
    ]
    for content_type, original in originals:
        for _ in range(6):
            damaged = bytearray(original)
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(8, len(damaged))] = rng.randrange(256)
            if rng.random() < 0.5:
                damaged = damaged[: rng.randrange(16, len(damaged))]
            media_id = await upload_ok(alice, bytes(damaged), content_type)
            for params in ({"method": "crop"}, {"method": "scale", "animated": "true"}):
                status, body, _ = await _thumbnail(api, alice, media_id, 32, 32, **params)
                assert status in (200, 400, 413), (content_type, status, body[:200])
                if status != 200:
                    assert b'"errcode"' in body


async def test_concurrent_requests_for_a_new_size_store_one_thumbnail(api, services):
    import asyncio

    alice = await api.register("alice")
    media_id = await upload_ok(alice, image_bytes(1000, 800), "image/jpeg")
    before = len(await _thumbnail_rows(services, media_id))
    results = await asyncio.gather(*(_thumbnail(api, alice, media_id, 150, 150, "crop") for _ in range(6)))
    assert {status for status, _, _ in results} == {200}
    assert len({body for _, body, _ in results}) == 1
    assert len(await _thumbnail_rows(services, media_id)) == before + 1
    assert len(stored_files(services)) == before + 2
