"""End-to-end encryption across servers: keys of other servers' users, and send-to-device.

Spec: https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption and
#send-to-device-messaging.

- Our users' /keys/query and /keys/claim name other servers' users: each server is
  asked (POST /user/keys/query, /user/keys/claim) in parallel, within the client's
  timeout; a server that fails or does not answer in time is listed under
  ``failures``. What a server answers is believed only for its own users, and only
  for the users and devices asked for. Device lists we hold (federation/device_lists.py)
  answer queries without asking.
- /sendToDevice for other servers' users becomes one m.direct_to_device EDU per
  server; one from another server is delivered to our users' devices when its sender
  belongs to that server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from homeserver.protocol import ids
from homeserver.storage.remote_devices import RemoteDeviceList

from federation.client import FederationError, FederationUnreachable
from federation.context import Federation
from federation.device_lists import DeviceLists, is_from, valid_cross_signing_key, valid_device_keys
from federation.transactions import TransactionHandler

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
V1 = "/_matrix/federation/v1"
MAX_KEYS_BYTES = 4 * 1024 * 1024


def install(fed: Federation, transactions: TransactionHandler) -> "RemoteE2e":
    device_lists = DeviceLists(fed)
    device_lists.install(transactions)
    remote = RemoteE2e(fed, device_lists)
    fed.services.e2e_keys.remote = remote
    fed.services.to_device.remote = remote.send_to_device
    transactions.on_edu("m.direct_to_device", remote.direct_to_device_in)
    return remote


def _failure(e: BaseException) -> JsonDict:
    # The shape Synapse gives: an HTTP-like status and a message.
    if isinstance(e, FederationError):
        return {"status": e.status, "message": f"{e.errcode or 'error'} from the server"}
    if isinstance(e, asyncio.TimeoutError):
        return {"status": 504, "message": "The server did not answer in time"}
    if isinstance(e, FederationUnreachable):
        return {"status": 503, "message": "The server could not be reached"}
    return {"status": 502, "message": "The server's answer was not understood"}


def _from_held(held: RemoteDeviceList, device_ids: list[str]) -> dict[str, JsonDict]:
    out = {}
    for device in held.devices.values():
        if device.keys is None or (device_ids and device.device_id not in device_ids):
            continue
        keys = dict(device.keys)
        if device.display_name is not None:
            keys["unsigned"] = {**(keys.get("unsigned") or {}), "device_display_name": device.display_name}
        out[device.device_id] = keys
    return out


class RemoteE2e:
    """``E2eKeyService.remote``: the keys of other servers' users."""

    def __init__(self, fed: Federation, device_lists: DeviceLists):
        self.fed = fed
        self.device_lists = device_lists

    @staticmethod
    def _by_server(wanted: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for user_id, value in wanted.items():
            server = ids.server_name_of(user_id) if ids.is_valid_user_id(user_id) else None
            if server is not None:
                out.setdefault(server, {})[user_id] = value
        return out

    # POST /keys/query

    async def query(self, wanted: dict[str, list[str]], timeout_s: float) -> JsonDict:
        out: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}, "failures": {}}

        async def one(server: str, users: dict[str, list[str]]) -> None:
            try:
                found = await asyncio.wait_for(self._query_server(server, users, timeout_s), timeout_s)
            except (FederationError, FederationUnreachable, asyncio.TimeoutError, ValueError) as e:
                log.info("keys of %s not queried: %r", server, e)
                out["failures"][server] = _failure(e)
                return
            for section in ("device_keys", "master_keys", "self_signing_keys"):
                out[section].update(found[section])

        await asyncio.gather(*(one(s, u) for s, u in self._by_server(wanted).items()))
        return out

    async def _query_server(self, server: str, wanted: dict[str, list[str]], timeout_s: float) -> JsonDict:
        out: JsonDict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        held = await self.device_lists.fresh_lists(list(wanted), timeout_s)
        for user_id, found in held.items():
            out["device_keys"][user_id] = _from_held(found, wanted[user_id])
            if found.master_key is not None:
                out["master_keys"][user_id] = found.master_key
            if found.self_signing_key is not None:
                out["self_signing_keys"][user_id] = found.self_signing_key
        ask = {u: d for u, d in wanted.items() if u not in held}
        if not ask:
            return out
        answer = await self.fed.client.post_json(
            server, f"{V1}/user/keys/query", {"device_keys": ask}, timeout=timeout_s, max_bytes=MAX_KEYS_BYTES)
        if not isinstance(answer, dict):
            raise ValueError("not an object")
        device_keys = answer.get("device_keys")
        for user_id, devices in (device_keys if isinstance(device_keys, dict) else {}).items():
            if user_id not in ask or not isinstance(devices, dict):
                continue  # only the users asked for, all of them of that server
            out["device_keys"][user_id] = {
                d: k for d, k in devices.items()
                if valid_device_keys(k, user_id, d) and (not ask[user_id] or d in ask[user_id])
            }
        for section, usage in (("master_keys", "master"), ("self_signing_keys", "self_signing")):
            keys = answer.get(section)
            for user_id, key in (keys if isinstance(keys, dict) else {}).items():
                if user_id in ask and valid_cross_signing_key(key, user_id, usage):
                    out[section][user_id] = key
        return out

    # POST /keys/claim

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_s: float) -> JsonDict:
        out: JsonDict = {"one_time_keys": {}, "failures": {}}

        async def one(server: str, users: dict[str, dict[str, str]]) -> None:
            try:
                answer = await self.fed.client.post_json(
                    server, f"{V1}/user/keys/claim", {"one_time_keys": users}, timeout=timeout_s,
                    max_bytes=MAX_KEYS_BYTES)
                if not isinstance(answer, dict) or not isinstance(answer.get("one_time_keys"), dict):
                    raise ValueError("no one_time_keys")
            except (FederationError, FederationUnreachable, asyncio.TimeoutError, ValueError) as e:
                log.info("keys of %s not claimed: %r", server, e)
                out["failures"][server] = _failure(e)
                return
            for user_id, devices in answer["one_time_keys"].items():
                if user_id not in users or not isinstance(devices, dict):
                    continue
                claimed = {
                    d: k for d, k in devices.items()
                    if d in users[user_id] and isinstance(k, dict)
                    and all(isinstance(key_id, str) and key_id.startswith(users[user_id][d] + ":") for key_id in k)
                }
                if claimed:
                    out["one_time_keys"][user_id] = claimed

        await asyncio.gather(*(one(s, u) for s, u in self._by_server(wanted).items()))
        return out

    # Send-to-device

    async def send_to_device(self, sender: str, event_type: str, message_id: str,
                             by_server: dict[str, dict[str, dict[str, JsonDict]]]) -> None:
        for server, messages in by_server.items():
            content = {"sender": sender, "type": event_type, "message_id": message_id, "messages": messages}
            await self.fed.sender.send_edu([server], "m.direct_to_device", content)

    async def direct_to_device_in(self, origin: str, content: JsonDict) -> None:
        sender, event_type = content.get("sender"), content.get("type")
        message_id, messages = content.get("message_id"), content.get("messages")
        if not is_from(sender, origin) or not isinstance(event_type, str) or not isinstance(message_id, str) \
                or not isinstance(messages, dict):
            log.info("m.direct_to_device from %s refused: sender %r", origin, sender)
            return
        await self.fed.services.to_device.receive_remote(sender, event_type, message_id, messages)
