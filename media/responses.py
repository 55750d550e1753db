"""Responses that carry media bytes: headers that make them safe to serve.

Spec: https://spec.matrix.org/v1.19/client-server-api/#serving-inline-content
and the Content-Security-Policy the content repository section recommends.
Header choices follow Synapse (synapse/media/_base.py), so that clients and
reverse proxies see what they are used to.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from aiohttp import web

from homeserver.http import CORS_HEADERS
from media.names import essence

# Types a browser may render inline (the spec's list; SVG is deliberately absent:
# it can carry script). Everything else is sent as an attachment.
INLINE_CONTENT_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

# Text types served with a UTF-8 charset when the uploader named none ("reasonably
# close" to the uploaded type, as the spec allows).
_TEXT_CONTENT_TYPES = frozenset({
    "text/css", "text/csv", "text/html", "text/calendar", "text/plain", "text/javascript",
    "application/json", "application/ld+json", "application/rtf", "image/svg+xml", "text/xml",
})

_SECURITY_HEADERS = {
    # The spec's recommended policy plus media-src, as Synapse sends: nothing served
    # from here can run script or reach other origins, even when opened directly.
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
        " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
    ),
    "X-Content-Security-Policy": "sandbox;",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Robots-Tag": "noindex, nofollow, noarchive, noimageindex",
}

# Media never changes under its URI. Authenticated downloads are private: a
# "public" response to a request with Authorization may be stored by a shared
# cache (RFC 9111 section 3.5) and handed to anyone asking the same URL.
CACHE_PRIVATE = "private, max-age=86400"
# The legacy routes take no token: what they serve is public anyway (as Synapse).
CACHE_PUBLIC = "public,max-age=86400,s-maxage=86400"

# RFC 9110 token characters; anything else goes into filename* instead.
_TOKEN_CHARS = frozenset(
    "!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def content_disposition(content_type: str, file_name: str | None, force_inline: bool = False) -> str:
    disposition = "inline" if force_inline or essence(content_type) in INLINE_CONTENT_TYPES else "attachment"
    if not file_name:
        return disposition
    if all(c in _TOKEN_CHARS for c in file_name):
        return f"{disposition}; filename={file_name}"
    # RFC 6266 / RFC 8187: non-token names are percent-encoded UTF-8 in filename*.
    return f"{disposition}; filename*=utf-8''{urllib.parse.quote(file_name, safe='')}"


def served_content_type(content_type: str) -> str:
    if essence(content_type) in _TEXT_CONTENT_TYPES and "charset" not in content_type.lower():
        return f"{content_type}; charset=UTF-8"
    return content_type


def file_response(
    path: Path, content_type: str, file_name: str | None, cache_control: str, force_inline: bool = False
) -> web.FileResponse:
    """Stream a stored file; aiohttp answers Range requests (206) and conditionals."""
    headers = {
        **CORS_HEADERS,
        **_SECURITY_HEADERS,
        "Content-Type": served_content_type(content_type),
        "Content-Disposition": content_disposition(content_type, file_name, force_inline),
        "Cache-Control": cache_control,
    }
    return web.FileResponse(path, chunk_size=256 * 1024, headers=headers)
