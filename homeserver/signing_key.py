"""The server's ed25519 signing key, kept in a file in the data directory, and the
public halves of the keys it replaced.

The key file holds one line, ``ed25519 <version> <base64 seed>`` (Synapse's format).
``rotate_signing_key`` writes a fresh key there and appends the replaced key's
public half to ``<key file>.old``, one line per key:
``ed25519 <version> <unpadded base64 public key> <expired_ts in ms>``. The server
publishes those keys in ``old_verify_keys``, so events they signed still verify; the
private half of a replaced key is not kept, as nothing may be signed with it again.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import nacl.signing

from homeserver.protocol import signing
from homeserver.protocol.canonical import decode_base64


@dataclasses.dataclass(frozen=True)
class OldVerifyKey:
    key_id: str
    verify_key: nacl.signing.VerifyKey
    # When the server stopped signing with it (ms).
    expired_ts: int


def _new_key(taken: set[str]) -> Any:
    while True:
        key = signing.generate_signing_key("a_" + os.urandom(3).hex())
        if signing.key_id(key) not in taken:
            return key


def write_new_signing_key(path: Path) -> Any:
    key = _new_key(set())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Readable by the owner only: whoever holds this key can speak for the server.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(signing.encode_signing_key(key) + "\n")
    return key


def load_signing_key(path: Path) -> Any:
    line = path.read_text().strip().splitlines()[0]
    return signing.decode_signing_key(line)


def load_or_create_signing_key(path: Path) -> Any:
    if not path.exists():
        return write_new_signing_key(path)
    return load_signing_key(path)


def old_keys_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".old")


def load_old_verify_keys(key_path: Path) -> list[OldVerifyKey]:
    """The replaced keys recorded beside ``key_path`` (none if there is no file)."""
    try:
        text = old_keys_path(key_path).read_text()
    except FileNotFoundError:
        return []
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            algorithm, version, public, expired_ts = parts
            if algorithm != signing.ED25519:
                raise ValueError(f"unknown algorithm {algorithm}")
            verify_key = nacl.signing.VerifyKey(decode_base64(public))
            keys.append(OldVerifyKey(f"{algorithm}:{version}", verify_key, int(expired_ts)))
        except Exception as exc:  # a wrong field count, base64 or key length
            raise ValueError(f"{old_keys_path(key_path)} line {number}: {exc}") from exc
    return keys


def rotate_signing_key(key_path: Path, now_ms: int) -> tuple[Any, OldVerifyKey]:
    """Replace the key in ``key_path`` by a fresh one; the old one expires at ``now_ms``.

    The old key is recorded first and the new key file then renamed into place, so a
    crash in between leaves the current key in use (and also listed as old, which
    readers ignore for the current key's id).
    """
    current = load_signing_key(key_path)
    old = OldVerifyKey(signing.key_id(current), current.verify_key, now_ms)
    taken = {old.key_id} | {k.key_id for k in load_old_verify_keys(key_path)}
    new = _new_key(taken)
    old_line = f"{current.alg} {current.version} {signing.verify_key_base64(current)} {now_ms}\n"
    fd = os.open(old_keys_path(key_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(old_line)
        f.flush()
        os.fsync(f.fileno())
    temporary = key_path.with_name(key_path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(signing.encode_signing_key(new) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, key_path)
    return new, old
