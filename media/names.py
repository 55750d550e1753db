"""What may appear in an mxc:// URI, a file name and a media Content-Type.

Spec (content repository, security considerations): homeservers MUST restrict
the server name to valid server names and the media id to [A-Za-z0-9_-], a
whitelist rather than a blacklist of "." and "/", which encodings slip past.
"""

from __future__ import annotations

import re
import secrets
import string

from homeserver.errors import invalid_param, not_found
from homeserver.protocol import ids

_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_MEDIA_ID_ALPHABET = string.ascii_letters
_MEDIA_ID_LENGTH = 24  # as Synapse: 24 letters, about 137 bits
# type "/" subtype [; parameters], each a token of RFC 9110 (printable ASCII only).
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_CONTENT_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}(\s*;[\x20-\x7e]*)?$")
MAX_FILE_NAME_LENGTH = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def new_media_id() -> str:
    return "".join(secrets.choice(_MEDIA_ID_ALPHABET) for _ in range(_MEDIA_ID_LENGTH))


def mxc_uri(server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"


def check_mxc_parts(server_name: str, media_id: str) -> None:
    """404 M_NOT_FOUND for anything that cannot name media: no such media can exist."""
    if not ids.is_valid_server_name(server_name) or not _MEDIA_ID.match(media_id):
        raise not_found("Invalid media id")


def check_file_name(name: str) -> str:
    """A file name for Content-Disposition: no path, no control characters."""
    if (
        not name
        or len(name) > MAX_FILE_NAME_LENGTH
        or name in (".", "..")
        or any(c in "/\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in name)
    ):
        raise invalid_param(
            "File name must be 1 to 255 characters without '/', '\\' or control characters"
        )
    return name


def parse_content_type(header: str | None) -> str:
    """The upload's Content-Type; the spec (v1.12) makes it optional, octet-stream by default."""
    if header is None or not header.strip():
        return DEFAULT_CONTENT_TYPE
    value = header.strip()
    if len(value) > 255 or not _CONTENT_TYPE.match(value):
        raise invalid_param("Content-Type must be a media type such as image/png")
    return value


def essence(content_type: str) -> str:
    """type/subtype in lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()
