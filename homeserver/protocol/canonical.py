"""Canonical JSON and unpadded base64.

Spec: https://spec.matrix.org/v1.19/appendices/#canonical-json
"""

from __future__ import annotations

import json
from typing import Any

import canonicaljson
import unpaddedbase64

# Integers in events must be within the range [-(2**53)+1, (2**53)-1].
MIN_INT = -(2**53) + 1
MAX_INT = 2**53 - 1


class CanonicalJsonError(ValueError):
    """The value cannot be represented in canonical JSON."""


def encode_canonical_json(value: Any) -> bytes:
    """Encode as canonical JSON: sorted keys, no whitespace, UTF-8, no floats."""
    check_canonical_values(value)
    return canonicaljson.encode_canonical_json(value)


def canonical_json_str(value: Any) -> str:
    return encode_canonical_json(value).decode("utf-8")


def event_json_text(event_json: Any) -> str:
    """The canonical text an event is stored and forwarded as.

    Lenient where ``encode_canonical_json`` is strict: rooms of versions 1-5
    allow floats and larger integers, and their events must be kept as they
    were signed, so only the room version's own format check may refuse them.
    """
    return canonicaljson.encode_canonical_json(event_json).decode("utf-8")


def check_canonical_values(value: Any, path: str = "") -> None:
    """Reject floats, out-of-range integers and non-string keys (room version 6+ rule)."""
    # Every event goes through here, and is almost always fine: walked first without
    # naming where each value is, then, only if something is wrong, again to say where.
    if not _canonical_values(value):
        _explain_canonical_values(value, path)


def _canonical_values(value: Any) -> bool:
    if value is None or value is True or value is False or type(value) is str:
        return True
    if type(value) is int:
        return MIN_INT <= value <= MAX_INT
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or not _canonical_values(item):
                return False
        return True
    if type(value) is list:
        for item in value:
            if not _canonical_values(item):
                return False
        return True
    return False  # subclasses, tuples, floats...: the careful walk decides


def _explain_canonical_values(value: Any, path: str = "") -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise CanonicalJsonError(f"integer out of range at {path or 'top level'}")
        return
    if isinstance(value, float):
        raise CanonicalJsonError(f"float values are not allowed at {path or 'top level'}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJsonError(f"non-string key at {path or 'top level'}")
            _explain_canonical_values(item, f"{path}.{key}" if path else key)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _explain_canonical_values(item, f"{path}[{index}]")
        return
    raise CanonicalJsonError(f"unsupported value of type {type(value).__name__} at {path}")


def _reject_constant(name: str) -> Any:
    raise CanonicalJsonError(f"{name} is not valid JSON")


def parse_json(data: bytes | str) -> Any:
    """Parse JSON strictly: NaN and Infinity are refused (they are not JSON)."""
    return json.loads(data, parse_constant=_reject_constant)


def encode_base64(data: bytes, urlsafe: bool = False) -> str:
    return unpaddedbase64.encode_base64(data, urlsafe=urlsafe)


def decode_base64(data: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not."""
    return unpaddedbase64.decode_base64(data)
