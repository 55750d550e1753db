"""The grammar of Matrix identifiers: server names, user ids, room ids and aliases, event ids.

Spec: https://spec.matrix.org/v1.19/appendices/#identifier-grammar

Identifiers received from other servers are checked against the tolerant
historical grammar (rooms hold events from users whose ids predate the strict
one); only ids we allocate ourselves must pass ``is_valid_localpart``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from homeserver.protocol.room_versions import EventFormat, RoomVersion

# User ids, room ids, room aliases and event ids: at most 255 bytes, sigil and domain included.
MAX_ID_BYTES = 255

_PORT = r"[0-9]{1,5}"
_DNS_NAME_RE = re.compile(r"[A-Za-z0-9.\-]{1,255}")
_IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_PORT_RE = re.compile(_PORT)
_STRICT_LOCALPART_RE = re.compile(r"[a-z0-9._=\-/+]+")
# Room version 3 event ids are standard base64 of a sha256; version 4 on, URL-safe.
_HASH_ID_V3_RE = re.compile(r"[A-Za-z0-9+/]{43}")
_HASH_ID_V4_RE = re.compile(r"[A-Za-z0-9_\-]{43}")


class InvalidIdError(ValueError):
    """The string is not an identifier of the expected kind."""


class UserId(NamedTuple):
    localpart: str
    server_name: str

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.server_name}"


def is_valid_server_name(server_name: str) -> bool:
    """``hostname [":" port]`` where hostname is IPv4, ``[IPv6]`` or a DNS name."""
    if not isinstance(server_name, str) or not server_name:
        return False
    if server_name.startswith("["):
        end = server_name.find("]")
        if end == -1:
            return False
        host, rest = server_name[1:end], server_name[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            return False
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
    else:
        host, sep, port = server_name.partition(":")
        rest = sep + port
        if not _DNS_NAME_RE.fullmatch(host):
            return False
        # Four numeric labels are an IPv4 literal, whose parts must be 0-255.
        if _IPV4_RE.fullmatch(host) and any(int(part) > 255 for part in host.split(".")):
            return False
    if rest:
        return rest.startswith(":") and _PORT_RE.fullmatch(rest[1:]) is not None
    return True


def is_valid_localpart(localpart: str) -> bool:
    """The strict grammar for user ids we allocate: ``a-z 0-9 . _ = - / +``, not empty."""
    return isinstance(localpart, str) and _STRICT_LOCALPART_RE.fullmatch(localpart) is not None


def _is_historical_opaque(value: str) -> bool:
    # Any non-surrogate code point except ":" and NUL (appendix "Historical User IDs").
    return not any(ch == ":" or ch == "\x00" or "\ud800" <= ch <= "\udfff" for ch in value)


def _too_long(identifier: str) -> bool:
    return len(identifier.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES


def _split_sigil_id(identifier: object, sigil: str, kind: str) -> tuple[str, str]:
    """Split ``<sigil>localpart:server_name`` with the historical localpart grammar."""
    if not isinstance(identifier, str) or not identifier.startswith(sigil):
        raise InvalidIdError(f"{kind} must start with {sigil!r}")
    if _too_long(identifier):
        raise InvalidIdError(f"{kind} is longer than {MAX_ID_BYTES} bytes")
    # The localpart cannot contain ":", so the first one separates it from the server name.
    localpart, sep, server_name = identifier[1:].partition(":")
    if not sep:
        raise InvalidIdError(f"{kind} has no server name")
    if not _is_historical_opaque(localpart):
        raise InvalidIdError(f"{kind} localpart contains NUL or a surrogate code point")
    if not is_valid_server_name(server_name):
        raise InvalidIdError(f"{kind} has an invalid server name {server_name!r}")
    return localpart, server_name


def parse_user_id(user_id: str) -> UserId:
    """Parse ``@localpart:server_name``, accepting historical localparts (even empty)."""
    localpart, server_name = _split_sigil_id(user_id, "@", "user id")
    return UserId(localpart, server_name)


def is_valid_user_id(user_id: str, *, strict: bool = False) -> bool:
    """``strict`` also requires the localpart grammar of newly registered users."""
    try:
        parsed = parse_user_id(user_id)
    except InvalidIdError:
        return False
    return is_valid_localpart(parsed.localpart) if strict else True


def parse_room_alias(alias: str) -> tuple[str, str]:
    """Parse ``#localpart:server_name`` into (localpart, server_name)."""
    return _split_sigil_id(alias, "#", "room alias")


def is_valid_room_alias(alias: str) -> bool:
    try:
        parse_room_alias(alias)
    except InvalidIdError:
        return False
    return True


def is_valid_room_id(room_id: str, room_version: RoomVersion | None = None) -> bool:
    """``!opaque:server_name`` before room version 12; ``!<url-safe sha256>`` from 12 on.

    Without a room version either form is accepted.
    """
    if not isinstance(room_id, str) or not room_id.startswith("!"):
        return False
    if room_version is None or room_version.room_id_from_create_event:
        if _HASH_ID_V4_RE.fullmatch(room_id[1:]):
            return True
        if room_version is not None:
            return False
    try:
        _split_sigil_id(room_id, "!", "room id")
    except InvalidIdError:
        return False
    return True


def is_valid_event_id(event_id: str, room_version: RoomVersion | None = None) -> bool:
    """``$opaque:server_name`` in room versions 1-2, ``$<sha256 in base64>`` from 3 on.

    Without a room version, any ``$`` id within the length limit is accepted.
    """
    if not isinstance(event_id, str) or len(event_id) < 2 or not event_id.startswith("$"):
        return False
    if _too_long(event_id) or not _is_historical_opaque(event_id.replace(":", "")):
        return False
    if room_version is None:
        return True
    if room_version.event_format is EventFormat.V1:
        return ":" in event_id
    if room_version.event_format is EventFormat.V2:
        return _HASH_ID_V3_RE.fullmatch(event_id[1:]) is not None
    return _HASH_ID_V4_RE.fullmatch(event_id[1:]) is not None


def server_name_of(identifier: str) -> str | None:
    """The server name of an ``&localpart:server_name`` id; None for hash-based ids."""
    if not isinstance(identifier, str):
        return None
    _, sep, server_name = identifier.partition(":")
    if not sep or not is_valid_server_name(server_name):
        return None
    return server_name
