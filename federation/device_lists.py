"""Device lists across servers: ours announced, theirs cached and kept fresh.

Spec: https://spec.matrix.org/v1.19/server-server-api/#device-management and
#end-to-end-encryption (m.signing_key_update).

- Out: a change of one of our users' devices or keys (E2eKeyService.listeners) becomes
  an m.device_list_update (or m.signing_key_update) EDU to every server with a member
  in a room the user is joined to. ``stream_id`` is the change's position on our
  device list stream and ``prev_id`` the user's position before it, so a receiver that
  missed one resyncs.
- In: we hold the device list of another server's user only while they share a room
  with one of our users ("tracked"). An update that follows the held list is applied;
  one after a gap, or for a list not held yet, makes the list stale and it is fetched
  again whole with GET /user/devices/{userId}. Either way the user's change goes on our
  device list stream, so that our users sharing a room see it in /sync.
- A remote user joining a room with one of ours gets their list fetched; a user who no
  longer shares a room with ours is forgotten (updates for them are no longer heard).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.services.e2e_keys import LocalDeviceChange
from homeserver.storage.remote_devices import RemoteDevice, RemoteDeviceList, RemoteDeviceStore

from federation.client import FederationError, FederationUnreachable
from federation.context import Federation
from federation.transactions import TransactionHandler

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
V1 = "/_matrix/federation/v1"
RESYNC_TIMEOUT_S = 30
# Answers to GET /user/devices: a user with many devices, each with a few keys.
MAX_DEVICES_BYTES = 4 * 1024 * 1024
# Errors of an answer or an unreachable server: the list stays stale and is asked again later.
RESYNC_ERRORS = (FederationError, FederationUnreachable, asyncio.TimeoutError, ValueError)


def is_from(user_id: Any, server_name: str) -> bool:
    return isinstance(user_id, str) and ids.is_valid_user_id(user_id) and ids.server_name_of(user_id) == server_name


def valid_device_keys(keys: Any, user_id: str, device_id: str) -> bool:
    return isinstance(keys, dict) and keys.get("user_id") == user_id and keys.get("device_id") == device_id


def valid_cross_signing_key(key: Any, user_id: str, usage: str) -> bool:
    return (isinstance(key, dict) and key.get("user_id") == user_id and isinstance(key.get("usage"), list)
            and usage in key["usage"] and isinstance(key.get("keys"), dict) and len(key["keys"]) == 1)


def without_display_name(keys: JsonDict) -> JsonDict:
    """Device names stay on this server, as in our /user/devices answers."""
    unsigned = keys.get("unsigned")
    if not isinstance(unsigned, dict) or "device_display_name" not in unsigned:
        return keys
    rest = {k: v for k, v in unsigned.items() if k != "device_display_name"}
    out = {k: v for k, v in keys.items() if k != "unsigned"}
    if rest:
        out["unsigned"] = rest
    return out


def parse_user_devices(user_id: str, answer: Any) -> tuple[int, list[RemoteDevice], JsonDict | None, JsonDict | None]:
    """A GET /user/devices answer, checked: it must be about the user asked for."""
    if not isinstance(answer, dict) or answer.get("user_id") != user_id or not isinstance(answer.get("devices"), list):
        raise ValueError("not a device list of the user asked for")
    stream_id = answer.get("stream_id")
    devices = []
    for entry in answer["devices"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("device_id"), str):
            continue
        device_id = entry["device_id"]
        keys = entry.get("keys")
        name = entry.get("device_display_name")
        devices.append(RemoteDevice(device_id, name if isinstance(name, str) else None,
                                    keys if valid_device_keys(keys, user_id, device_id) else None))
    master = answer.get("master_key")
    self_signing = answer.get("self_signing_key")
    return (
        stream_id if _is_int(stream_id) else 0,
        devices,
        master if valid_cross_signing_key(master, user_id, "master") else None,
        self_signing if valid_cross_signing_key(self_signing, user_id, "self_signing") else None,
    )


class DeviceLists:
    def __init__(self, fed: Federation):
        self.fed = fed
        self.store = RemoteDeviceStore(fed.services.db)
        self.e2e = fed.services.e2e_keys
        self._resyncs: dict[str, asyncio.Task] = {}

    def install(self, transactions: TransactionHandler) -> None:
        transactions.on_edu("m.device_list_update", self.device_list_update_in)
        transactions.on_edu("m.signing_key_update", self.signing_key_update_in)
        self.e2e.listeners.append(self.local_change)
        self.fed.services.pipeline.after_persist.append(self.membership_persisted)

    def _local(self, user_id: str) -> bool:
        return ids.server_name_of(user_id) == self.fed.server_name

    async def tracked(self, user_id: str) -> bool:
        return await self.store.shares_room_with_local(user_id, self.fed.server_name)

    # Out

    async def local_change(self, change: LocalDeviceChange) -> None:
        if not self._local(change.user_id):
            return
        sharing = await self.e2e.store.users_sharing_rooms(change.user_id)
        destinations = {ids.server_name_of(u) for u in sharing} - {self.fed.server_name, None}
        if not destinations:
            return
        user_id, position = change.user_id, change.position
        prev = await self.e2e.previous_change(user_id, position)
        keys: JsonDict = {}
        if change.device_ids and not change.deleted:
            keys = (await self.e2e.query("", {user_id: list(change.device_ids)}))["device_keys"].get(user_id, {})
        for i, device_id in enumerate(change.device_ids):
            # Several devices at one position: each follows the one before it.
            prev_id = [position] if i else ([prev] if prev is not None else [])
            content: JsonDict = {"user_id": user_id, "device_id": device_id, "stream_id": position,
                                 "prev_id": prev_id, "deleted": change.deleted}
            if device_id in keys:
                content["keys"] = without_display_name(keys[device_id])
            await self.fed.sender.send_edu(destinations, "m.device_list_update", content)
        if change.cross_signing:
            found = await self.e2e.query("", {user_id: []})
            content = {"user_id": user_id}
            if user_id in found["master_keys"]:
                content["master_key"] = found["master_keys"][user_id]
            if user_id in found["self_signing_keys"]:
                content["self_signing_key"] = found["self_signing_keys"][user_id]
            await self.fed.sender.send_edu(destinations, "m.signing_key_update", content)

    # In

    async def device_list_update_in(self, origin: str, content: JsonDict) -> None:
        user_id, device_id = content.get("user_id"), content.get("device_id")
        stream_id, prev_ids = content.get("stream_id"), content.get("prev_id", [])
        if not is_from(user_id, origin) or not isinstance(device_id, str) or not _is_int(stream_id):
            return
        if not await self.tracked(user_id):
            await self.store.forget([user_id])
            return
        held = await self.store.get(user_id)
        keys = content.get("keys")
        deleted = content.get("deleted") is True
        follows = (
            held is not None and not held.stale and held.stream_id is not None
            and isinstance(prev_ids, list) and all(_is_int(p) and p <= held.stream_id for p in prev_ids)
            and (keys is None or valid_device_keys(keys, user_id, device_id))
        )
        if follows and stream_id < held.stream_id:
            return  # already part of a list fetched since
        if not follows:
            self.resync_soon(user_id)
            return
        name = content.get("device_display_name")
        await self.store.apply_update(user_id, stream_id, device_id, deleted, keys,
                                      name if isinstance(name, str) else None)
        await self.e2e.remote_devices_changed([user_id])

    async def signing_key_update_in(self, origin: str, content: JsonDict) -> None:
        user_id = content.get("user_id")
        if not is_from(user_id, origin) or not await self.tracked(user_id):
            return
        master, self_signing = content.get("master_key"), content.get("self_signing_key")
        if (master is not None and not valid_cross_signing_key(master, user_id, "master")) or (
                self_signing is not None and not valid_cross_signing_key(self_signing, user_id, "self_signing")):
            return
        held = await self.store.get(user_id)
        if held is None or held.stale:
            self.resync_soon(user_id)
            return
        await self.store.set_cross_signing(user_id, master, self_signing)
        await self.e2e.remote_devices_changed([user_id])

    async def membership_persisted(self, event: Event) -> None:
        if event.type != "m.room.member" or not event.state_key or event.internal.get("outlier"):
            return
        target = event.state_key
        if not self._local(target):
            if event.membership == "join":
                held = await self.store.get(target)
                if (held is None or held.stale) and await self.tracked(target):
                    # As Synapse: a user who joins a room with ours has their devices fetched
                    # (and our members see them as changed).
                    self.resync_soon(target)
            elif not await self.tracked(target):
                await self.store.forget([target])
        elif event.membership != "join":
            # Our user left: the room's other servers' users may share no room with ours any more.
            members = await self.fed.services.state.get_members(event.room_id, "join")
            gone = [m for m in members if not self._local(m) and not await self.tracked(m)]
            if gone:
                await self.store.forget(gone)

    # Resync

    def resync_soon(self, user_id: str) -> None:
        """Fetch the user's list again in the background (once at a time); stale until then."""
        if user_id in self._resyncs:
            return
        task = asyncio.create_task(self._background_resync(user_id))
        self._resyncs[user_id] = task
        task.add_done_callback(lambda _: self._resyncs.pop(user_id, None))

    async def _background_resync(self, user_id: str) -> None:
        try:
            await self.store.mark_stale([user_id])
            await self.resync(user_id)
        except RESYNC_ERRORS as e:
            log.info("device list of %s not fetched: %s", user_id, e)
        except Exception:
            log.exception("device list of %s not fetched", user_id)

    async def resync(self, user_id: str, timeout: float = RESYNC_TIMEOUT_S) -> RemoteDeviceList:
        """GET /user/devices/{userId} from the user's server; the held list replaced, and our
        users sharing a room told. Raises one of RESYNC_ERRORS."""
        server = ids.server_name_of(user_id)
        if server is None:
            raise ValueError("user id without a server name")
        answer = await self.fed.client.get_json(
            server, f"{V1}/user/devices/{quote(user_id, safe='')}", timeout=timeout, max_bytes=MAX_DEVICES_BYTES)
        stream_id, devices, master, self_signing = parse_user_devices(user_id, answer)
        await self.store.replace(user_id, stream_id, devices, master, self_signing)
        await self.e2e.remote_devices_changed([user_id])
        held = await self.store.get(user_id)
        assert held is not None
        return held

    async def fresh_lists(self, user_ids: list[str], timeout: float) -> dict[str, RemoteDeviceList]:
        """The held, up-to-date lists of those of the users who are tracked (fetched when stale
        or not held yet); users missing from the answer must be asked for their keys directly."""
        held = await self.store.get_many(user_ids)
        out: dict[str, RemoteDeviceList] = {}
        untracked: list[str] = []
        for user_id in user_ids:
            if not await self.tracked(user_id):
                if user_id in held:
                    untracked.append(user_id)
                continue
            found = held.get(user_id)
            if found is not None and not found.stale:
                out[user_id] = found
                continue
            running = self._resyncs.get(user_id)
            try:
                if running is not None:
                    await asyncio.wait_for(asyncio.shield(running), timeout)
                    found = await self.store.get(user_id)
                    if found is not None and not found.stale:
                        out[user_id] = found
                else:
                    out[user_id] = await self.resync(user_id, timeout)
            except RESYNC_ERRORS as e:
                log.info("device list of %s not fetched: %s", user_id, e)
        if untracked:
            await self.store.forget(untracked)
        return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
