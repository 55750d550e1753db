"""End-to-end encryption keys: upload, query, claim, cross-signing, device list changes.

Spec: https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import nacl.exceptions
import nacl.signing

from homeserver.errors import MatrixError, invalid_param
from homeserver.protocol import ids
from homeserver.protocol.canonical import decode_base64
from homeserver.protocol.signing import SignatureError, verify_json
from homeserver.services.notifier import Notifier
from homeserver.storage.e2e_keys import E2eKeyStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import StreamIdGenerator

JsonDict = dict[str, Any]

log = logging.getLogger(__name__)

MASTER, SELF_SIGNING, USER_SIGNING = "master", "self_signing", "user_signing"
# Clients (Element among them) upload one-time keys when this count is low; Synapse
# always reports it, as 0 when the device has none.
SIGNED_CURVE25519 = "signed_curve25519"


@dataclasses.dataclass(frozen=True)
class DeviceListChanges:
    changed: list[str]
    left: list[str]


@dataclasses.dataclass(frozen=True)
class LocalDeviceChange:
    """A change of one of our users' devices or keys, at a device list stream position.

    Told to the service's listeners (federation sends it on to the servers that
    share a room with the user).
    """
    user_id: str
    position: int
    device_ids: tuple[str, ...] = ()  # devices whose keys changed, or that were deleted
    deleted: bool = False
    cross_signing: bool = False  # the master or self-signing key changed


class RemoteKeys(Protocol):
    """Keys of other servers' users (federation/e2e.py): answers shaped as /keys/query and
    /keys/claim, with the servers that could not be asked under "failures"."""

    async def query(self, wanted: dict[str, list[str]], timeout_s: float) -> JsonDict: ...

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_s: float) -> JsonDict: ...


# The spec's default for a /keys/query or /keys/claim that gives no timeout.
DEFAULT_REMOTE_TIMEOUT_MS = 10_000


def _ed25519_key(keys: Any, key_id: str) -> str | None:
    if isinstance(keys, dict) and isinstance(keys.get(key_id), str):
        return keys[key_id]
    return None


def signature_ok(obj: JsonDict, user_id: str, key_id: str, public_key: str) -> bool:
    """Does ``obj`` carry a valid signature of ``user_id``'s ``key_id`` (ed25519, base64 key)?"""
    try:
        verify_key = nacl.signing.VerifyKey(decode_base64(public_key))
        verify_json(obj, user_id, key_id, verify_key)
    except (SignatureError, ValueError, TypeError, nacl.exceptions.CryptoError):
        return False
    return True


def _cross_signing_public_key(key: JsonDict) -> str:
    """The one ed25519 public key of a cross-signing key (checked by _check_cross_signing_key)."""
    return next(iter(key["keys"].values()))


def _check_cross_signing_key(key: Any, user_id: str, usage: str) -> None:
    if not isinstance(key, dict):
        raise invalid_param(f"{usage} key must be an object")
    if key.get("user_id") != user_id:
        raise invalid_param(f"{usage} key is for another user")
    if not isinstance(key.get("usage"), list) or usage not in key["usage"]:
        raise invalid_param(f"{usage} key must have usage {usage}")
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise invalid_param(f"{usage} key must have exactly one key")
    (key_id, public), = keys.items()
    if not isinstance(public, str) or key_id != f"ed25519:{public}":
        raise invalid_param(f"{usage} key id must be ed25519:<public key>")
    if "signatures" in key and not isinstance(key["signatures"], dict):
        raise invalid_param(f"{usage} key signatures must be an object")


def _timeout_s(timeout_ms: int | None) -> float:
    ms = DEFAULT_REMOTE_TIMEOUT_MS if timeout_ms is None else timeout_ms
    # At least a second: a server cannot answer in less, and a 0 would fail every one.
    return max(1_000, min(ms, 60_000)) / 1000


def _keys_by_id(keys: Any, name: str) -> list[tuple[str, str, Any]]:
    """(algorithm, key id, key) of an upload's one_time_keys or fallback_keys."""
    if keys is None:
        return []
    if not isinstance(keys, dict):
        raise invalid_param(f"{name} must be an object")
    out = []
    for full_id, key in keys.items():
        algorithm, sep, key_id = full_id.partition(":")
        if not sep or not algorithm or not key_id or not isinstance(key, (dict, str)):
            raise invalid_param(f"{name}: bad key {full_id!r}")
        out.append((algorithm, key_id, key))
    return out


class E2eKeyService:
    def __init__(self, server_name: str, store: E2eKeyStore, state: StateStore,
                 stream: StreamIdGenerator, notifier: Notifier):
        self.server_name = server_name
        self.store = store
        self.state = state
        self.stream = stream
        self.notifier = notifier
        self.listeners: list[Callable[[LocalDeviceChange], Awaitable[None]]] = []
        # Set by the federation, when enabled: other servers' users are asked there.
        self.remote: RemoteKeys | None = None

    async def _tell(self, change: LocalDeviceChange) -> None:
        for listener in self.listeners:
            try:
                await listener(change)
            except Exception:  # the change is stored; telling others must not fail the request
                log.exception("device list listener failed for %s", change.user_id)

    # POST /keys/upload

    async def upload(self, user_id: str, device_id: str, body: JsonDict) -> dict[str, int]:
        device_keys = body.get("device_keys")
        one_time = _keys_by_id(body.get("one_time_keys"), "one_time_keys")
        # The unstable name of MSC2732 is still sent by some clients.
        fallback = _keys_by_id(
            body.get("fallback_keys", body.get("org.matrix.msc2732.fallback_keys")), "fallback_keys"
        )
        if device_keys is not None:
            self._check_device_keys(device_keys, user_id, device_id)
        if device_keys is not None and await self.store.get_device_keys(user_id, device_id) != device_keys:
            async with self.stream.allocate() as position:
                await self.store.set_device_keys(user_id, device_id, device_keys, position)
            await self._notify_device_list(position, [user_id])
            await self._tell(LocalDeviceChange(user_id, position, (device_id,)))
        await self.store.add_one_time_keys(user_id, device_id, one_time)
        if fallback:
            await self.store.set_fallback_keys(user_id, device_id, fallback)
        return await self.one_time_key_counts(user_id, device_id)

    def _check_device_keys(self, keys: Any, user_id: str, device_id: str) -> None:
        if not isinstance(keys, dict):
            raise invalid_param("device_keys must be an object")
        if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
            raise invalid_param("device_keys must be for the device that uploads them")
        if not isinstance(keys.get("algorithms"), list) or not all(isinstance(a, str) for a in keys["algorithms"]):
            raise invalid_param("device_keys.algorithms must be a list of strings")
        key_id = f"ed25519:{device_id}"
        public = _ed25519_key(keys.get("keys"), key_id)
        if public is None:
            raise invalid_param(f"device_keys.keys must hold {key_id}")
        if not signature_ok(keys, user_id, key_id, public):
            raise invalid_param("device_keys are not signed by the device's ed25519 key")

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        return self.reported_key_counts(await self.store.one_time_key_counts(user_id, device_id))

    @staticmethod
    def reported_key_counts(counts: dict[str, int]) -> dict[str, int]:
        """A device's one-time key counts as /sync reports them (/sync reads them with the rooms)."""
        return {SIGNED_CURVE25519: 0, **counts}

    # POST /keys/query

    async def query(self, requester: str, wanted: dict[str, list[str]],
                    timeout_ms: int | None = None) -> JsonDict:
        device_keys: dict[str, JsonDict] = {}
        cross: dict[str, dict[str, JsonDict]] = {MASTER: {}, SELF_SIGNING: {}, USER_SIGNING: {}}
        failures: JsonDict = {}
        remote = {u: d for u, d in wanted.items() if not self._is_local(u)}
        if remote and self.remote is not None:
            found = await self.remote.query(remote, _timeout_s(timeout_ms))
            device_keys.update(found["device_keys"])
            cross[MASTER].update(found["master_keys"])
            cross[SELF_SIGNING].update(found["self_signing_keys"])
            failures.update(found["failures"])
        for user_id, device_ids in wanted.items():
            if not self._is_local(user_id):
                continue
            devices = await self.store.query_devices(user_id, device_ids or None)
            keys = await self.store.get_cross_signing_keys(user_id)
            # Signatures uploaded later: a user's own (device <-> master, self-signing -> device)
            # and, on a master key, the requester's user-signing signature (shown only to them).
            target_ids = [d for d, _, _ in devices] + [_cross_signing_public_key(k) for k in keys.values()]
            extra = await self.store.signatures_for(user_id, target_ids, {user_id, requester})
            devices_out: JsonDict = {}
            for device_id, display_name, key in devices:
                key = self._with_signatures(key, device_id, extra, only_signer=user_id)
                key["unsigned"] = {**key.get("unsigned", {}), "device_display_name": display_name} \
                    if display_name is not None else key.get("unsigned", {})
                devices_out[device_id] = key
            device_keys[user_id] = devices_out
            for key_type, key in keys.items():
                if key_type == USER_SIGNING and user_id != requester:
                    continue
                signer = None if key_type == MASTER else user_id
                cross[key_type][user_id] = self._with_signatures(
                    key, _cross_signing_public_key(key), extra, only_signer=signer)
        return {
            "device_keys": device_keys,
            "failures": failures,
            "master_keys": cross[MASTER],
            "self_signing_keys": cross[SELF_SIGNING],
            "user_signing_keys": cross[USER_SIGNING],
        }

    @staticmethod
    def _with_signatures(key: JsonDict, target_id: str, extra: list[tuple[str, str, str, str]],
                         only_signer: str | None) -> JsonDict:
        key = dict(key)
        signatures = {u: dict(s) for u, s in key.get("signatures", {}).items()}
        for target, signer, signer_key, signature in extra:
            if target == target_id and (only_signer is None or signer == only_signer):
                signatures.setdefault(signer, {})[signer_key] = signature
        if signatures:
            key["signatures"] = signatures
        return key

    def _is_local(self, user_id: str) -> bool:
        try:
            return ids.parse_user_id(user_id).server_name == self.server_name
        except ids.InvalidIdError:
            return False

    # POST /keys/claim

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_ms: int | None = None) -> JsonDict:
        out: dict[str, JsonDict] = {}
        failures: JsonDict = {}
        remote = {u: d for u, d in wanted.items() if not self._is_local(u)}
        if remote and self.remote is not None:
            found = await self.remote.claim(remote, _timeout_s(timeout_ms))
            out.update(found["one_time_keys"])
            failures.update(found["failures"])
        for user_id, devices in wanted.items():
            if not self._is_local(user_id):
                continue
            for device_id, algorithm in devices.items():
                claimed = await self.store.claim_key(user_id, device_id, algorithm)
                if claimed is not None:
                    key_id, key = claimed
                    out.setdefault(user_id, {})[device_id] = {f"{algorithm}:{key_id}": key}
        return {"one_time_keys": out, "failures": failures}

    # POST /keys/device_signing/upload

    async def needs_auth_for_cross_signing(self, user_id: str, body: JsonDict) -> bool:
        """Synapse lets a user set up cross-signing without user-interactive auth when no
        master key exists yet (MSC3967), and accepts a repeat of the stored keys the same
        way; replacing keys needs the password. We match Synapse, which Element expects."""
        existing = await self.store.get_cross_signing_keys(user_id)
        if MASTER not in existing:
            return False
        uploaded = {t: body.get(f"{t}_key") for t in (MASTER, SELF_SIGNING, USER_SIGNING)}
        return any(k is not None and existing.get(t) != k for t, k in uploaded.items())

    async def upload_cross_signing(self, user_id: str, body: JsonDict) -> None:
        existing = await self.store.get_cross_signing_keys(user_id)
        new: dict[str, JsonDict] = {}
        for key_type in (MASTER, SELF_SIGNING, USER_SIGNING):
            key = body.get(f"{key_type}_key")
            if key is not None:
                _check_cross_signing_key(key, user_id, key_type)
                new[key_type] = key
        master = new.get(MASTER, existing.get(MASTER))
        if master is None and new:
            raise invalid_param("A master key is needed first")
        for key_type in (SELF_SIGNING, USER_SIGNING):
            if key_type in new:
                public = _cross_signing_public_key(master)
                if not signature_ok(new[key_type], user_id, f"ed25519:{public}", public):
                    raise invalid_param(f"{key_type} key must be signed by the master key")
        changed = {t: k for t, k in new.items() if existing.get(t) != k}
        if not changed:
            return
        async with self.stream.allocate() as position:
            await self.store.set_cross_signing_keys(user_id, changed, position)
        await self._notify_device_list(position, [user_id])
        if MASTER in changed or SELF_SIGNING in changed:
            # The user-signing key is never shown to other servers.
            await self._tell(LocalDeviceChange(user_id, position, cross_signing=True))

    # POST /keys/signatures/upload

    async def upload_signatures(self, user_id: str, body: JsonDict) -> JsonDict:
        own = await self.store.get_cross_signing_keys(user_id)
        failures: dict[str, JsonDict] = {}
        accepted: list[tuple[str, str, str, str]] = []
        for target_user, objects in body.items():
            if not isinstance(objects, dict):
                raise invalid_param("Each user must map key ids to signed objects")
            for target_key_id, signed in objects.items():
                try:
                    accepted.extend(await self._check_signed_object(user_id, own, target_user, target_key_id, signed))
                except MatrixError as e:
                    failures.setdefault(target_user, {})[target_key_id] = {"errcode": e.errcode, "error": e.error}
        if accepted:
            async with self.stream.allocate() as position:
                await self.store.add_signatures(user_id, accepted, position)
            await self._notify_device_list(position, sorted({a[1] for a in accepted}))
            # Other servers see the new signatures on the user's own keys; a signature of
            # another user's master key is shown to its signer alone.
            own_targets = {a[2] for a in accepted if a[1] == user_id}
            if own_targets:
                master = own.get(MASTER)
                master_id = _cross_signing_public_key(master) if master else None
                devices = tuple(sorted(own_targets - {master_id}))
                await self._tell(LocalDeviceChange(
                    user_id, position, devices, cross_signing=master_id in own_targets))
        return {"failures": failures}

    async def _check_signed_object(
        self, user_id: str, own: dict[str, JsonDict], target_user: str, target_key_id: str, signed: Any,
    ) -> list[tuple[str, str, str, str]]:
        """The new signatures of the requester on one key, checked; MatrixError if refused."""
        if not isinstance(signed, dict) or signed.get("user_id") != target_user:
            raise MatrixError(400, "M_INVALID_PARAM", "The signed object must be the target user's key")
        if not self._is_local(target_user):
            raise MatrixError(400, "M_INVALID_PARAM", "Only keys of this server's users can be signed")
        signatures = signed.get("signatures", {}).get(user_id) if isinstance(signed.get("signatures"), dict) else None
        if not isinstance(signatures, dict) or not signatures:
            raise MatrixError(400, "M_INVALID_SIGNATURE", "No signature of the uploader")
        target_keys = await self.store.get_cross_signing_keys(target_user)
        target_master = target_keys.get(MASTER)
        if target_master is not None and target_key_id == _cross_signing_public_key(target_master):
            stored: JsonDict | None = target_master
            if target_user == user_id:
                # One's own master key, signed by one of one's devices.
                signers = {d: _ed25519_key(k.get("keys"), f"ed25519:{d}")
                           for d, _, k in await self.store.query_devices(user_id, None)}
                allowed = {f"ed25519:{d}": public for d, public in signers.items() if public}
            else:
                # Another user's master key, signed by one's user-signing key.
                allowed = self._cross_signing_signer(own.get(USER_SIGNING))
        elif target_user == user_id:
            # One's own device, signed by one's self-signing key.
            found = await self.store.get_device_keys(user_id, target_key_id)
            stored = found
            allowed = self._cross_signing_signer(own.get(SELF_SIGNING))
        else:
            raise MatrixError(400, "M_INVALID_PARAM", "Only master keys of other users can be signed")
        if stored is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown key")
        # The signed object must be the stored key (signatures and unsigned aside).
        strip = ("signatures", "unsigned")
        if {k: v for k, v in signed.items() if k not in strip} != {k: v for k, v in stored.items() if k not in strip}:
            raise MatrixError(400, "M_INVALID_SIGNATURE", "The signed object is not the stored key")
        out = []
        for signer_key_id, signature in signatures.items():
            public = allowed.get(signer_key_id)
            if public is None:
                continue  # Signatures already on the key, or by keys that may not sign it.
            if not signature_ok(signed, user_id, signer_key_id, public):
                raise MatrixError(400, "M_INVALID_SIGNATURE", "Invalid signature")
            out.append((signer_key_id, target_user, target_key_id, signature))
        if not out:
            raise MatrixError(400, "M_INVALID_SIGNATURE", "No signature by a key allowed to sign this key")
        return out

    @staticmethod
    def _cross_signing_signer(key: JsonDict | None) -> dict[str, str]:
        if key is None:
            return {}
        public = _cross_signing_public_key(key)
        return {f"ed25519:{public}": public}

    # Device lists

    async def devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """Keys and to-device messages go with the device (foreign keys); others must hear of it."""
        async with self.stream.allocate() as position:
            await self.store.mark_changed([user_id], position)
        await self._notify_device_list(position, [user_id])
        await self._tell(LocalDeviceChange(user_id, position, tuple(device_ids), deleted=True))

    async def remote_devices_changed(self, user_ids: Iterable[str]) -> None:
        """Other servers' users whose device lists changed: our users who share a room
        with them see them in /sync device_lists.changed."""
        user_ids = sorted(set(user_ids))
        if not user_ids:
            return
        async with self.stream.allocate() as position:
            await self.store.mark_changed(user_ids, position)
        await self._notify_device_list(position, user_ids)

    async def previous_change(self, user_id: str, position: int) -> int | None:
        """The user's device list position before ``position`` (the prev_id of an update)."""
        return await self.store.last_change_before(user_id, position)

    async def _notify_device_list(self, position: int, user_ids: list[str]) -> None:
        wake: set[str] = set()
        for user_id in user_ids:
            wake |= await self.store.users_sharing_rooms(user_id)
        self.notifier.notify_at(self.stream, position, wake)

    async def device_list_changes(
        self, user_id: str, since_events: int, now_events: int, since_lists: int, now_lists: int,
        rooms: list[str] | None = None, member_changes: set[tuple[str, str]] | None = None,
    ) -> DeviceListChanges:
        """Users whose devices the syncing user must (re)fetch or may forget, between two tokens.

        Like Synapse: users sharing any room (not only encrypted ones) whose keys changed, and
        users who joined or left a room shared with the user, or whose rooms the user joined or left.
        The caller may know the user's rooms, and the (room id, user id) of the membership
        events of those rooms between the tokens (/sync reads them with the user's rooms).
        """
        if since_lists >= now_lists and since_events >= now_events:
            return DeviceListChanges([], [])  # neither stream moved: nothing to ask
        if member_changes is None:
            if rooms is None:  # every room the user has a membership in
                rooms = list((await self.state.get_rooms_for_user(user_id)).keys())
            member_changes = (await self.store.member_changes_in_rooms(rooms, since_events, now_events)
                              if since_events < now_events else set())
        if not member_changes and since_lists >= now_lists:
            return DeviceListChanges([], [])  # messages only: no one joined, left or changed keys
        sharing = await self.store.users_sharing_rooms(user_id)
        changed = await self.store.changed_users(since_lists, now_lists, sharing) if since_lists < now_lists else set()
        candidates: set[str] = set()
        for room_id, member in member_changes:
            if member == user_id:
                candidates |= await self.store.joined_members([room_id])
            else:
                candidates.add(member)
        candidates.discard(user_id)
        changed |= candidates & sharing
        left = candidates - sharing
        return DeviceListChanges(sorted(changed), sorted(left))
