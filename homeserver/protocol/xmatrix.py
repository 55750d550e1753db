"""The X-Matrix Authorization header of server-server requests.

Spec: https://spec.matrix.org/v1.19/server-server-api/#request-authentication

A request is authenticated by signing a JSON object made of its method, target
(path and query as sent), origin, destination and JSON body, and sending that
signature in ``Authorization: X-Matrix origin=...,destination=...,key=...,sig=...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nacl.signing

from homeserver.protocol import ids
from homeserver.protocol.signing import sign_json, verify_json

SCHEME = "X-Matrix"

# RFC 7230 section 3.2.6 "tchar"; colons are added because older servers send
# "key=ed25519:abc" unquoted and the spec asks recipients to accept that.
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789"
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_UNQUOTED_VALUE_CHARS = _TOKEN_CHARS | {":"}
_WHITESPACE = " \t"
_KNOWN_PARAMS = ("origin", "destination", "key", "sig")


class XMatrixError(ValueError):
    """The header is not a well-formed X-Matrix authorization."""


@dataclass(frozen=True)
class XMatrixAuth:
    origin: str
    destination: str | None  # optional for servers older than spec v1.3
    key_id: str
    signature: str


def _parse_params(text: str) -> dict[str, str]:
    """``name=value`` pairs separated by commas, values as token or quoted-string."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise XMatrixError("expected a parameter name")
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n or text[i] != "=":
            raise XMatrixError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise XMatrixError(f"unterminated quoted value for {name!r}")
                ch = text[i]
                if ch == "\\":
                    if i + 1 >= n:
                        raise XMatrixError(f"dangling backslash in {name!r}")
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    i += 1
                    break
                chars.append(ch)
                i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] in _UNQUOTED_VALUE_CHARS:
                i += 1
            value = text[start:i]
            if not value:
                raise XMatrixError(f"parameter {name!r} has an empty or invalid value")
        if name in params:
            # Two different origins or signatures would leave us guessing which counts.
            raise XMatrixError(f"parameter {name!r} given twice")
        params[name] = value
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            return params
        if text[i] != ",":
            raise XMatrixError(f"unexpected {text[i]!r} after parameter {name!r}")
        i += 1


def parse_x_matrix(header_value: str) -> XMatrixAuth:
    """Parse an ``Authorization`` header value of scheme X-Matrix (RFC 7235 syntax).

    Parameter names and the scheme are case-insensitive, values may be quoted
    (with backslash escapes) or bare tokens, and unknown parameters are ignored.
    """
    if not isinstance(header_value, str):
        raise XMatrixError("the Authorization header is missing")
    scheme, sep, rest = header_value.strip(_WHITESPACE).partition(" ")
    if scheme.lower() != SCHEME.lower() or not sep:
        raise XMatrixError("not an X-Matrix authorization")
    params = _parse_params(rest)
    missing = [name for name in ("origin", "key", "sig") if name not in params]
    if missing:
        raise XMatrixError("missing X-Matrix parameter(s): " + ", ".join(missing))
    origin, destination = params["origin"], params.get("destination")
    if not ids.is_valid_server_name(origin):
        raise XMatrixError(f"origin {origin!r} is not a valid server name")
    if destination is not None and not ids.is_valid_server_name(destination):
        raise XMatrixError(f"destination {destination!r} is not a valid server name")
    algorithm, colon, version = params["key"].partition(":")
    if not (algorithm and colon and version):
        raise XMatrixError("key must be '<algorithm>:<version>'")
    if not params["sig"]:
        raise XMatrixError("sig is empty")
    return XMatrixAuth(origin, destination, params["key"], params["sig"])


def _quote(value: str) -> str:
    # Server names, key ids and base64 never hold these; escape anyway so that a
    # strange value cannot break out of its quotes.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_x_matrix(auth: XMatrixAuth) -> str:
    """The header value, written as the spec asks senders to for old recipients:
    one space after the scheme, lower-case names, every value quoted."""
    parts = [f"origin={_quote(auth.origin)}"]
    if auth.destination is not None:
        parts.append(f"destination={_quote(auth.destination)}")
    parts.append(f"key={_quote(auth.key_id)}")
    parts.append(f"sig={_quote(auth.signature)}")
    return f"{SCHEME} " + ",".join(parts)


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Any | None
) -> dict[str, Any]:
    """The object whose signature authenticates a request.

    ``uri`` is the request target as sent: path and, if any, ``?`` and query,
    without scheme and host. Server names are those before any delegation.
    """
    obj: dict[str, Any] = {
        "method": method.upper(),
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(
    signing_key: nacl.signing.SigningKey,
    method: str,
    uri: str,
    origin: str,
    destination: str,
    content: Any | None,
) -> str:
    """The full ``Authorization`` header value for a request we send."""
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, signing_key)
    key_id = f"{signing_key.alg}:{signing_key.version}"
    return format_x_matrix(
        XMatrixAuth(origin, destination, key_id, signed["signatures"][origin][key_id])
    )


def verify_request(
    auth: XMatrixAuth,
    method: str,
    uri: str,
    destination: str,
    content: Any | None,
    verify_key: nacl.signing.VerifyKey,
) -> None:
    """Check the header's signature over the request with ``verify_key``.

    ``destination`` is our own server name: the signed object always names the
    receiving server, whether or not the sender put it in the header. Raises
    ``homeserver.protocol.signing.SignatureError``.
    """
    obj = request_json(method, uri, auth.origin, destination, content)
    obj["signatures"] = {auth.origin: {auth.key_id: auth.signature}}
    verify_json(obj, auth.origin, auth.key_id, verify_key)
