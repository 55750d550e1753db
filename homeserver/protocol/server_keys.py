"""Server signing keys: the /_matrix/key/v2/server response and when a key may be used.

Spec: https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys,
https://spec.matrix.org/v1.19/server-server-api/#validating-hashes-and-signatures-on-received-events
and the signing key validity rule of room version 5
(https://spec.matrix.org/v1.19/rooms/v5/#signing-key-validity-period).

Pure: the caller brings the response as parsed JSON and the time it was fetched.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import nacl.signing

from homeserver.protocol import ids
from homeserver.protocol.canonical import CanonicalJsonError, check_canonical_values, decode_base64
from homeserver.protocol.events import Event
from homeserver.protocol.signing import ED25519, SignatureError, verify_json

# "Servers MUST use the lesser of valid_until_ts and 7 days into the future."
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000
# The version part of a key id: "[a-zA-Z0-9_]" (keys.yaml).
_KEY_VERSION_RE = re.compile(r"[A-Za-z0-9_]+")


class ServerKeysError(ValueError):
    """A key response is malformed, names another server, or is not signed by its server."""


@dataclasses.dataclass(frozen=True)
class ServerKey:
    """One public key of a server, as learnt from one key response."""

    server_name: str
    key_id: str
    verify_key: nacl.signing.VerifyKey
    # Until when the key may sign: for a current key the lesser of the response's
    # valid_until_ts and 7 days after we fetched it; for an old key its expired_ts.
    valid_until_ts: int
    # Set for a key of old_verify_keys: it signed events until then, and no requests.
    expired_ts: int | None = None

    @property
    def is_old(self) -> bool:
        return self.expired_ts is not None


@dataclasses.dataclass(frozen=True)
class ServerKeysResponse:
    """A validated /_matrix/key/v2/server response and the keys it gives."""

    server_name: str
    # As published; notaries compare it with a query's minimum_valid_until_ts.
    valid_until_ts: int
    keys: Mapping[str, ServerKey]
    # The response exactly as signed (with any notary signatures it arrived with).
    json: dict[str, Any]


def is_ed25519_key_id(key_id: Any) -> bool:
    if not isinstance(key_id, str):
        return False
    algorithm, sep, version = key_id.partition(":")
    return sep == ":" and algorithm == ED25519 and _KEY_VERSION_RE.fullmatch(version) is not None


def _decode_verify_key(server_name: str, key_id: str, entry: Any) -> nacl.signing.VerifyKey:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise ServerKeysError(f"key {key_id} of {server_name} has no 'key' string")
    try:
        return nacl.signing.VerifyKey(decode_base64(entry["key"]))
    except Exception as exc:  # base64 and nacl raise assorted types
        raise ServerKeysError(f"key {key_id} of {server_name} is not an ed25519 public key") from exc


def _is_timestamp(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_server_keys_response(
    response: Any, server_name: str, fetched_ts: int
) -> ServerKeysResponse:
    """Validate a key response for ``server_name``, fetched (by us) at ``fetched_ts``.

    Checks: the object names ``server_name``; ``valid_until_ts`` is a timestamp;
    every key decodes; old keys carry ``expired_ts``; and the server signed the
    object with at least one of its ``verify_keys`` while no signature of it under
    a listed key fails. Keys of other algorithms than ed25519 are skipped.
    """
    if not isinstance(response, dict):
        raise ServerKeysError("a key response is a JSON object")
    if response.get("server_name") != server_name:
        raise ServerKeysError(
            f"key response names {response.get('server_name')!r}, expected {server_name!r}"
        )
    try:
        check_canonical_values(response)
    except CanonicalJsonError as exc:
        raise ServerKeysError(f"key response of {server_name} is not canonical JSON: {exc}") from exc
    valid_until_ts = response.get("valid_until_ts")
    if not _is_timestamp(valid_until_ts):
        raise ServerKeysError(f"key response of {server_name} has no valid_until_ts")
    verify_keys = response.get("verify_keys")
    old_verify_keys = response.get("old_verify_keys", {})
    if not isinstance(verify_keys, dict) or not isinstance(old_verify_keys, dict):
        raise ServerKeysError(f"verify_keys and old_verify_keys of {server_name} must be objects")

    keys: dict[str, ServerKey] = {}
    current_until = min(valid_until_ts, fetched_ts + MAX_KEY_VALIDITY_MS)
    for key_id, entry in old_verify_keys.items():
        if not is_ed25519_key_id(key_id):
            continue
        expired_ts = entry.get("expired_ts") if isinstance(entry, dict) else None
        if not _is_timestamp(expired_ts):
            raise ServerKeysError(f"old key {key_id} of {server_name} has no expired_ts")
        verify_key = _decode_verify_key(server_name, key_id, entry)
        keys[key_id] = ServerKey(server_name, key_id, verify_key, min(expired_ts, current_until), expired_ts)
    current: dict[str, nacl.signing.VerifyKey] = {}
    for key_id, entry in verify_keys.items():
        if not is_ed25519_key_id(key_id):
            continue
        current[key_id] = verify_key = _decode_verify_key(server_name, key_id, entry)
        # A key listed as current too is current: the server still signs with it.
        keys[key_id] = ServerKey(server_name, key_id, verify_key, current_until)

    _check_self_signature(response, server_name, current)
    return ServerKeysResponse(server_name, valid_until_ts, keys, response)


def _check_self_signature(
    response: dict[str, Any], server_name: str, current: Mapping[str, nacl.signing.VerifyKey]
) -> None:
    signatures = response.get("signatures")
    own = signatures.get(server_name) if isinstance(signatures, dict) else None
    if not isinstance(own, dict):
        raise ServerKeysError(f"key response of {server_name} is not signed by {server_name}")
    verified = False
    for key_id in own:
        verify_key = current.get(key_id)
        if verify_key is None:
            continue
        try:
            verify_json(response, server_name, key_id, verify_key)
        except SignatureError as exc:
            raise ServerKeysError(f"bad self-signature {key_id} on the keys of {server_name}") from exc
        verified = True
    if not verified:
        raise ServerKeysError(
            f"key response of {server_name} is not signed with any of its verify_keys"
        )


def check_notary_signature(
    response: Mapping[str, Any], notary: str, pinned: Mapping[str, str]
) -> None:
    """A response relayed by ``notary`` must carry its signature under one of the
    pinned keys (``key id -> unpadded base64``); raise SignatureError otherwise."""
    signatures = response.get("signatures")
    theirs = signatures.get(notary) if isinstance(signatures, dict) else None
    if not isinstance(theirs, dict):
        raise SignatureError(f"the key response is not signed by the notary {notary}")
    for key_id, key_base64 in pinned.items():
        if key_id not in theirs:
            continue
        try:
            verify_key = nacl.signing.VerifyKey(decode_base64(key_base64))
        except Exception as exc:
            raise SignatureError(f"the pinned key {key_id} of {notary} is not an ed25519 key") from exc
        verify_json(dict(response), notary, key_id, verify_key)
        return
    raise SignatureError(f"the key response is not signed with a pinned key of {notary}")


def server_keys_object(
    server_name: str,
    verify_keys: Mapping[str, str],
    old_verify_keys: Mapping[str, tuple[str, int]],
    valid_until_ts: int,
) -> dict[str, Any]:
    """Our own /_matrix/key/v2/server body, unsigned: ``verify_keys`` maps key id to
    base64, ``old_verify_keys`` maps key id to (base64, expired_ts)."""
    return {
        "server_name": server_name,
        "verify_keys": {key_id: {"key": key} for key_id, key in verify_keys.items()},
        "old_verify_keys": {
            key_id: {"key": key, "expired_ts": expired_ts}
            for key_id, (key, expired_ts) in old_verify_keys.items()
            if key_id not in verify_keys
        },
        "valid_until_ts": valid_until_ts,
    }


# --- Which keys may verify what ------------------------------------------------------


def key_usable_for_event(key: ServerKey, event: Event) -> bool:
    """Room versions 1-4 ignore key validity; from v5 on (``enforce_key_validity``)
    the key must be valid at the event's ``origin_server_ts``."""
    if not event.room_version.enforce_key_validity:
        return True
    return key.valid_until_ts >= event.origin_server_ts


def min_valid_until_for_event(event: Event) -> int:
    """The ``minimum_valid_until_ts`` to ask for when fetching the keys of an event."""
    return event.origin_server_ts if event.room_version.enforce_key_validity else 0


def key_usable_at(key: ServerKey, at_ts: int) -> bool:
    """For requests and other signed JSON: only current keys (old_verify_keys are
    "only valid for signing events"), valid at ``at_ts``."""
    return not key.is_old and key.valid_until_ts >= at_ts


def signature_key_ids(obj: Mapping[str, Any], server_name: str) -> list[str]:
    """The ed25519 key ids under which ``server_name`` signed ``obj``."""
    signatures = obj.get("signatures")
    theirs = signatures.get(server_name) if isinstance(signatures, dict) else None
    if not isinstance(theirs, dict):
        return []
    return [key_id for key_id in theirs if is_ed25519_key_id(key_id)]


def required_signature_servers(event: Event) -> set[str]:
    """The servers whose signatures an event must carry (spec: "Validating hashes and
    signatures on received events"); raise SignatureError for an id without a server."""
    servers: set[str] = set()
    content = event.content
    is_member = event.type == "m.room.member"
    # The sender's server, except for an invite made from a third-party invite: its
    # sender must match the 3pid invite's, but another server may send it.
    if not (is_member and event.membership == "invite" and "third_party_invite" in content):
        servers.add(_server_of(event.json.get("sender"), "sender"))
    # Room versions 1 and 2: the server that made the event id.
    if event.room_version.uses_event_id_in_event:
        servers.add(_server_of(event.event_id, "event_id"))
    # Restricted joins: the server of the user that authorised the join.
    if (
        event.room_version.restricted_join_allowed
        and is_member
        and event.membership == "join"
        and "join_authorised_via_users_server" in content
    ):
        authoriser = content["join_authorised_via_users_server"]
        servers.add(_server_of(authoriser, "join_authorised_via_users_server"))
    return servers


def _server_of(identifier: Any, field: str) -> str:
    server = ids.server_name_of(identifier) if isinstance(identifier, str) else None
    if server is None:
        raise SignatureError(f"the event's {field} names no valid server")
    return server
