"""Thumbnails with Pillow: pure, blocking functions, meant to run in a worker thread.

Spec: https://spec.matrix.org/v1.19/client-server-api/#thumbnails
- "scale" keeps the aspect ratio and fits the requested box; "crop" returns the
  requested aspect ratio, cut from the middle of the image.
- Never upscale; never return less than asked unless the image is smaller.

Only JPEG, PNG, GIF and WebP are ever decoded: every format Pillow may open is
decoder code attacker-controlled bytes reach (SVG and the rest are never
thumbnailed). The pixel count is checked from the header, before decoding.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings

from PIL import Image, ImageOps, ImageSequence

# Content type -> Pillow format name, for the formats we agree to decode.
THUMBNAILABLE = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
_PILLOW_FORMATS = tuple(THUMBNAILABLE.values())
# Longer animations get a still thumbnail of their first frame.
MAX_ANIMATION_FRAMES = 300
_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # these swap width and height


class ThumbnailError(Exception):
    """The content cannot be thumbnailed (not an image we decode, or corrupt)."""


class ImageTooLarge(ThumbnailError):
    """The image has more pixels than we agree to decode."""


@dataclasses.dataclass(frozen=True)
class Probe:
    width: int  # as displayed, after the EXIF orientation
    height: int
    animated: bool  # more than one frame
    animatable: bool  # animated, and within the limits for an animated thumbnail
    reoriented: bool  # the EXIF orientation turns or flips the stored pixels


@dataclasses.dataclass(frozen=True)
class Request:
    width: int
    height: int
    method: str  # "crop" or "scale"


@dataclasses.dataclass(frozen=True)
class Rendered:
    request: Request
    width: int
    height: int
    content_type: str
    animated: bool
    data: bytes


def _open(path: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns, then errors, past its own limit; ours is checked just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError:
        raise ImageTooLarge("Image is too large to thumbnail")
    except Exception as e:  # each format's parser fails in its own way on hostile bytes
        raise ThumbnailError(f"Not an image that can be thumbnailed ({type(e).__name__})")
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise ThumbnailError("Image has no pixels")
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(f"Image of {width}x{height} pixels is too large to thumbnail")
    return image


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # EXIF parsing meets every kind of broken camera output
        return 1


def probe(path: str, max_pixels: int) -> Probe:
    """Size and animation of an image from its header, without decoding its pixels."""
    with _open(path, max_pixels) as image:
        orientation = _orientation(image)
        width, height = image.size
        if orientation in _ROTATED_ORIENTATIONS:
            width, height = height, width
        try:
            # Counting frames walks the file: broken data may show here already.
            animated = bool(getattr(image, "is_animated", False))
            animatable = _animation_within_limits(image, max_pixels)
        except Exception as e:
            raise ThumbnailError(f"Image data is corrupt ({type(e).__name__})")
        return Probe(width, height, animated, animatable, orientation not in (1, 0))


def output_size(image_w: int, image_h: int, request: Request) -> tuple[int, int, tuple[int, int, int, int]]:
    """(width, height, source box) of the thumbnail of an image for a request; never upscaled."""
    if request.method == "crop":
        # The largest centred region with the requested aspect ratio...
        if image_w * request.height > image_h * request.width:
            box_h, box_w = image_h, max(1, round(image_h * request.width / request.height))
        else:
            box_w, box_h = image_w, max(1, round(image_w * request.height / request.width))
        left, top = (image_w - box_w) // 2, (image_h - box_h) // 2
        box = (left, top, left + box_w, top + box_h)
        # ...scaled down to the requested size if it is larger.
        if box_w > request.width:
            return request.width, request.height, box
        return box_w, box_h, box
    factor = min(request.width / image_w, request.height / image_h, 1.0)
    return max(1, round(image_w * factor)), max(1, round(image_h * factor)), (0, 0, image_w, image_h)


def render(path: str, requests: list[Request], max_pixels: int, animated: bool = False) -> list[Rendered]:
    """Thumbnails of one image for several requests, decoding it once.

    ThumbnailError (or ImageTooLarge) when the image cannot be thumbnailed.
    """
    try:
        with _open(path, max_pixels) as image:
            if animated and _animation_within_limits(image, max_pixels):
                return [_render_animated(image, request) for request in requests]
            return _render_static(image, requests)
    except ThumbnailError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge("Image is too large to thumbnail")
    except Exception as e:
        # Truncated or corrupt data surfaces only when the pixels are decoded, as
        # any of the errors a decoder raises on hostile bytes.
        raise ThumbnailError(f"Image data is corrupt ({type(e).__name__})")


def _animation_within_limits(image: Image.Image, max_pixels: int) -> bool:
    if not getattr(image, "is_animated", False):
        return False
    # Every frame is decoded: bound the frames and the pixels of all of them together.
    frames = image.n_frames
    return frames <= MAX_ANIMATION_FRAMES and frames * image.width * image.height <= 4 * max_pixels


def _render_static(image: Image.Image, requests: list[Request]) -> list[Rendered]:
    orientation = _orientation(image)
    shown_w, shown_h = image.size
    if orientation in _ROTATED_ORIENTATIONS:
        shown_w, shown_h = shown_h, shown_w
    # JPEG can decode at 1/2, 1/4 or 1/8 scale: ask for the smallest that still
    # covers the largest thumbnail, which makes a 12-megapixel photo cheap.
    needed_w = needed_h = 1
    for request in requests:
        out_w, out_h, box = output_size(shown_w, shown_h, request)
        needed_w = max(needed_w, math.ceil(out_w * shown_w / (box[2] - box[0])))
        needed_h = max(needed_h, math.ceil(out_h * shown_h / (box[3] - box[1])))
    if orientation in _ROTATED_ORIENTATIONS:
        needed_w, needed_h = needed_h, needed_w
    # Photos stay JPEG; other sources (screenshots, drawings, transparency) get
    # lossless PNG, whose artefact-free edges matter more than its size here.
    as_png = image.format != "JPEG"
    image.draft(None, (needed_w, needed_h))
    image = ImageOps.exif_transpose(image)
    image = _normalise_mode(image)
    content_type = "image/png" if as_png else "image/jpeg"
    out = []
    # Sizes come from the true dimensions; the source box is scaled to what
    # draft() decoded, so results do not depend on the decoding shortcut.
    sx, sy = image.width / shown_w, image.height / shown_h
    for request in requests:
        out_w, out_h, (left, top, right, bottom) = output_size(shown_w, shown_h, request)
        box = (left * sx, top * sy, right * sx, bottom * sy)
        thumb = image.resize((out_w, out_h), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
        out.append(Rendered(request, out_w, out_h, content_type, False, _encode(thumb, as_png)))
    return out


def _normalise_mode(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    wanted = "RGBA" if has_alpha else "RGB"
    return image if image.mode == wanted else image.convert(wanted)


def _encode(image: Image.Image, as_png: bool) -> bytes:
    buffer = io.BytesIO()
    if as_png:
        image.save(buffer, "PNG", optimize=False)
    else:
        image.save(buffer, "JPEG", quality=80, progressive=True)
    return buffer.getvalue()


def _render_animated(image: Image.Image, request: Request) -> Rendered:
    """An animated WebP (the type the spec prefers for animation) of every frame."""
    out_w, out_h, box = output_size(image.width, image.height, request)
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        frames.append(frame.convert("RGBA").resize((out_w, out_h), Image.Resampling.LANCZOS, box=box))
        durations.append(int(frame.info.get("duration", 100)) or 100)
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "WEBP", save_all=True, append_images=frames[1:], duration=durations,
        loop=int(image.info.get("loop", 0)), quality=80,
    )
    return Rendered(request, out_w, out_h, "image/webp", True, buffer.getvalue())


def covers(width: int, height: int, method: str, request: Request) -> bool:
    """Whether a thumbnail of this size answers the request without upscaling on the client."""
    if method != request.method:
        return False
    if method == "crop":
        # Same aspect ratio (within 10%), at least as large in both directions.
        same_aspect = abs(width * request.height - height * request.width) <= 0.1 * width * request.height
        return same_aspect and width >= request.width and height >= request.height
    # A scaled image fits the box when either side reaches it.
    return width >= request.width or height >= request.height
