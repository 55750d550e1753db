"""Signed device and cross-signing keys, made with real ed25519 keys, for the E2EE tests."""

from __future__ import annotations

import copy
from typing import Any

import nacl.signing
import signedjson.sign

from homeserver.protocol.canonical import encode_base64
from tests.helpers import User

V3 = "/_matrix/client/v3"


def public(key: nacl.signing.SigningKey) -> str:
    return encode_base64(bytes(key.verify_key))


def sign(obj: dict[str, Any], user_id: str, key_name: str, key: nacl.signing.SigningKey) -> dict[str, Any]:
    """``obj`` signed by ``user_id``'s key ``ed25519:<key_name>``."""
    key.alg, key.version = "ed25519", key_name
    return signedjson.sign.sign_json(copy.deepcopy(obj), user_id, key)


def device_keys(user: User, key: nacl.signing.SigningKey, device_id: str | None = None) -> dict[str, Any]:
    device_id = device_id or user.device_id
    return sign({
        "user_id": user.user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": "curve" + device_id, f"ed25519:{device_id}": public(key)},
    }, user.user_id, device_id, key)


def cross_signing_key(user: User, usage: str, key: nacl.signing.SigningKey,
                      master: nacl.signing.SigningKey | None = None) -> dict[str, Any]:
    obj = {"user_id": user.user_id, "usage": [usage], "keys": {f"ed25519:{public(key)}": public(key)}}
    if master is not None:
        obj = sign(obj, user.user_id, public(master), master)
    return obj


async def upload(user: User, body: dict[str, Any]):
    return await user.post(f"{V3}/keys/upload", body)


async def upload_device_keys(user: User) -> nacl.signing.SigningKey:
    key = nacl.signing.SigningKey.generate()
    r = await upload(user, {"device_keys": device_keys(user, key)})
    assert r.status == 200, r
    return key


async def query(user: User, wanted: dict[str, list[str]]):
    r = await user.post(f"{V3}/keys/query", {"device_keys": wanted})
    assert r.status == 200, r
    return r.body
