"""Signing keys, JSON signatures, content and reference hashes, event ids.

Spec: https://spec.matrix.org/v1.19/appendices/#signing-json and
https://spec.matrix.org/v1.19/server-server-api/#signing-events

Hashes and signatures use the canonicaljson library directly rather than
``canonical.encode_canonical_json``: events of room versions 1-5 may hold
floats, and their hashes must still be computed as their origin did.
"""

from __future__ import annotations

import hashlib
from typing import Any

import canonicaljson
import nacl.signing
import signedjson.key
import signedjson.sign

from homeserver.protocol.canonical import decode_base64, encode_base64
from homeserver.protocol.events import Event
from homeserver.protocol.redaction import redacted_view
from homeserver.protocol.room_versions import EventFormat, RoomVersion

ED25519 = signedjson.key.NACL_ED25519


class SignatureError(ValueError):
    """A signature is missing, malformed or does not verify."""


# --- Signing keys -------------------------------------------------------------------


def generate_signing_key(version: str) -> nacl.signing.SigningKey:
    """A fresh ed25519 key, with ``.version`` and ``.alg`` set as signedjson expects."""
    return signedjson.key.generate_signing_key(version)


def encode_signing_key(key: nacl.signing.SigningKey) -> str:
    """The key file line Synapse uses: ``ed25519 <version> <unpadded base64 seed>``."""
    return f"{key.alg} {key.version} {signedjson.key.encode_signing_key_base64(key)}"


def decode_signing_key(line: str) -> nacl.signing.SigningKey:
    """Parse one key file line written by ``encode_signing_key``."""
    parts = line.split()
    if len(parts) != 3:
        raise ValueError("a signing key line is '<algorithm> <version> <base64 seed>'")
    algorithm, version, seed = parts
    try:
        return signedjson.key.decode_signing_key_base64(algorithm, version, seed)
    except Exception as exc:  # nacl and base64 raise assorted types
        raise ValueError(f"invalid signing key: {exc}") from exc


def verify_key_base64(key: nacl.signing.SigningKey | nacl.signing.VerifyKey) -> str:
    """The unpadded base64 public key, as published in ``/_matrix/key/v2/server``."""
    verify_key = key.verify_key if isinstance(key, nacl.signing.SigningKey) else key
    return encode_base64(bytes(verify_key))


def key_id(key: nacl.signing.SigningKey) -> str:
    return f"{key.alg}:{key.version}"


# --- JSON signatures ----------------------------------------------------------------


def sign_json(obj: dict[str, Any], server_name: str, signing_key: nacl.signing.SigningKey) -> dict:
    """Sign ``obj`` (ignoring ``signatures`` and ``unsigned``), add it under
    ``obj["signatures"][server_name]``, and return ``obj``."""
    return signedjson.sign.sign_json(obj, server_name, signing_key)


def verify_json(
    obj: dict[str, Any], server_name: str, key_id: str, verify_key: nacl.signing.VerifyKey
) -> None:
    """Check ``obj["signatures"][server_name][key_id]``; raise SignatureError if it fails."""
    try:
        keyed = signedjson.key.decode_verify_key_bytes(key_id, bytes(verify_key))
    except ValueError as exc:
        raise SignatureError(f"unsupported key id {key_id!r}") from exc
    signatures = obj.get("signatures")
    if not isinstance(signatures, dict) or not isinstance(signatures.get(server_name), dict):
        raise SignatureError(f"no signatures from {server_name}")
    try:
        signedjson.sign.verify_signed_json(obj, server_name, keyed)
    except signedjson.sign.SignatureVerifyException as exc:
        raise SignatureError(str(exc)) from exc


# --- Hashes -------------------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    return canonicaljson.encode_canonical_json(value)


def compute_content_hash(event_json: dict[str, Any]) -> bytes:
    """SHA-256 of the full event without ``unsigned``, ``signatures`` and ``hashes``."""
    stripped = {
        k: v for k, v in event_json.items() if k not in ("unsigned", "signatures", "hashes")
    }
    return hashlib.sha256(_canonical(stripped)).digest()


def add_content_hash(event_json: dict[str, Any]) -> None:
    event_json["hashes"] = {"sha256": encode_base64(compute_content_hash(event_json))}


def check_content_hash(event_json: dict[str, Any]) -> bool:
    """Whether ``hashes.sha256`` matches; if not, the event must be used redacted."""
    hashes = event_json.get("hashes")
    claimed = hashes.get("sha256") if isinstance(hashes, dict) else None
    if not isinstance(claimed, str):
        return False
    try:
        return decode_base64(claimed) == compute_content_hash(event_json)
    except Exception:  # malformed base64
        return False


def compute_reference_hash(event_json: dict[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 of the redacted event without ``signatures``, ``unsigned`` and ``age_ts``."""
    redacted = redacted_view(event_json, room_version)
    for key in ("signatures", "unsigned", "age_ts"):
        redacted.pop(key, None)
    return hashlib.sha256(_canonical(redacted)).digest()


# --- Event ids ----------------------------------------------------------------------


def compute_event_id(event_json: dict[str, Any], room_version: RoomVersion) -> str:
    """The id of an event: sent in the event in v1-v2, its reference hash from v3 on."""
    if room_version.event_format is EventFormat.V1:
        event_id = event_json.get("event_id")
        if not isinstance(event_id, str):
            raise ValueError("room versions 1 and 2 need an event_id in the event")
        return event_id
    reference = compute_reference_hash(event_json, room_version)
    urlsafe = room_version.event_format is not EventFormat.V2
    return "$" + encode_base64(reference, urlsafe=urlsafe)


def room_id_from_create_event_id(event_id: str) -> str:
    """Room version 12: the room id is the create event's id with the sigil ``!``."""
    if not event_id.startswith("$") or len(event_id) < 2:
        raise ValueError(f"not an event id: {event_id!r}")
    return "!" + event_id[1:]


# --- Event signatures ---------------------------------------------------------------


def sign_event(
    event_json: dict[str, Any],
    room_version: RoomVersion,
    server_name: str,
    signing_key: nacl.signing.SigningKey,
) -> None:
    """Sign the redacted form of the event and copy the signature into ``event_json``.

    The content hash must already be set (``add_content_hash``): the signature
    covers the hashes, so a redacted copy still verifies.
    """
    _sign_redacted(event_json, room_version, server_name, signing_key)


def _sign_redacted(
    event_json: dict[str, Any], room_version: RoomVersion, server_name: str, signing_key: nacl.signing.SigningKey,
) -> bytes:
    """``sign_event``, returning the bytes signed: the canonical redacted event without
    ``signatures`` and ``unsigned`` (as signedjson's ``sign_json`` encodes it), which
    are also what the reference hash covers."""
    if not isinstance(event_json.get("hashes"), dict):
        raise ValueError("add the content hash before signing the event")
    redacted = redacted_view(event_json, room_version)
    for key in ("signatures", "unsigned", "age_ts"):
        redacted.pop(key, None)
    message = _canonical(redacted)
    signatures = event_json.get("signatures")
    if not isinstance(signatures, dict):
        signatures = event_json["signatures"] = {}
    signatures.setdefault(server_name, {})[key_id(signing_key)] = encode_base64(signing_key.sign(message).signature)
    return message


def sign_and_identify(
    event_json: dict[str, Any],
    room_version: RoomVersion,
    server_name: str,
    signing_key: nacl.signing.SigningKey,
) -> Event:
    """``sign_event`` then ``event_from_pdu``, for an event of ours, with one encoding:
    the signature and the reference hash (the event id from v3 on) cover the same bytes,
    the redacted event without ``signatures`` and ``unsigned``."""
    message = _sign_redacted(event_json, room_version, server_name, signing_key)
    if room_version.event_format is EventFormat.V1:
        return event_from_pdu(event_json, room_version)
    urlsafe = room_version.event_format is not EventFormat.V2
    return Event(event_json, "$" + encode_base64(hashlib.sha256(message).digest(), urlsafe=urlsafe), room_version)


def verify_event_signature(
    event_json: dict[str, Any],
    room_version: RoomVersion,
    server_name: str,
    key_id: str,
    verify_key: nacl.signing.VerifyKey,
) -> None:
    """Check one server's signature over the redacted event; raise SignatureError."""
    verify_json(redacted_view(event_json, room_version), server_name, key_id, verify_key)


def event_from_pdu(pdu: dict[str, Any], room_version: RoomVersion) -> Event:
    """The read-only Event view of a PDU, with the id its room version prescribes."""
    return Event(pdu, compute_event_id(pdu, room_version), room_version)
