"""What other servers may ask of our users and directory: profiles, aliases, the public
room list, devices and end-to-end keys.

Spec: https://spec.matrix.org/v1.19/server-server-api/#querying-for-information,
#public-room-directory, #device-management and #end-to-end-encryption.
Only our own users and aliases are answered for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.e2e_keys import E2eKeyService
from homeserver.services.room_directory import DirectoryRequest, RoomDirectoryService
from homeserver.storage.devices import DeviceStore
from homeserver.storage.event_graph import EventGraphStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.users import UserStore

if TYPE_CHECKING:
    from homeserver.services.container import Services

JsonDict = dict[str, Any]

# Key queries from other servers name no user of ours, so no user-signing key or
# signature meant for one of our users alone is shown.
_NO_LOCAL_REQUESTER = ""


def _without_display_name(device_keys: JsonDict) -> JsonDict:
    """Device names stay on this server, as Synapse keeps them by default
    (allow_device_name_lookup_over_federation: false): they often name a person's
    phone or laptop, which other servers' users have no need to learn."""
    unsigned = device_keys.get("unsigned")
    if not isinstance(unsigned, dict) or "device_display_name" not in unsigned:
        return device_keys
    rest = {k: v for k, v in unsigned.items() if k != "device_display_name"}
    out = {k: v for k, v in device_keys.items() if k != "unsigned"}
    if rest:
        out["unsigned"] = rest
    return out


class FederationQueries:
    def __init__(
        self, server_name: str, users: UserStore, rooms: RoomStore, graph: EventGraphStore,
        directory: RoomDirectoryService, e2e_keys: E2eKeyService, devices: DeviceStore,
    ):
        self.server_name = server_name
        self.users = users
        self.rooms = rooms
        self.graph = graph
        self.directory = directory
        self.e2e_keys = e2e_keys
        self.devices = devices

    @classmethod
    def wired(cls, services: Services) -> FederationQueries:
        """On the container's stores and services (federation/serving.py builds it with the routes)."""
        graph = EventGraphStore(services.db, services.state)
        return cls(services.server_name, services.users, services.rooms, graph, services.room_directory,
                   services.e2e_keys, services.devices)

    def _local_user(self, user_id: str) -> None:
        try:
            parsed = ids.parse_user_id(user_id)
        except ids.InvalidIdError:
            raise invalid_param("Invalid user id")
        if parsed.server_name != self.server_name:
            raise not_found("User is not hosted on this server")

    # GET /query/profile

    async def profile(self, user_id: str, field: str | None) -> JsonDict:
        self._local_user(user_id)
        profile = await self.users.get_profile(user_id)
        if profile is None:
            raise not_found("Profile not found")
        if field is None:
            return profile
        return {field: profile[field]} if field in profile else {}

    # GET /query/directory

    async def room_alias(self, alias: str) -> JsonDict:
        if not ids.is_valid_room_alias(alias):
            raise invalid_param("Invalid room alias")
        if ids.server_name_of(alias) != self.server_name:
            raise not_found("Room alias is not hosted on this server")
        found = await self.rooms.get_alias(alias)
        if found is None:
            raise not_found("Room alias not found")
        room_id = found[0]
        joined = await self.graph.joined_servers(room_id)
        servers = ([self.server_name] if self.server_name in joined else []) + sorted(joined - {self.server_name})
        return {"room_id": room_id, "servers": servers}

    # GET and POST /publicRooms

    async def public_rooms(self, request: DirectoryRequest) -> JsonDict:
        return await self.directory.list(request)

    # GET /user/devices/{userId}

    async def user_devices(self, user_id: str) -> JsonDict:
        self._local_user(user_id)
        keys = await self.e2e_keys.query(_NO_LOCAL_REQUESTER, {user_id: []})
        device_keys = keys["device_keys"].get(user_id, {})
        devices = []
        for device in sorted(await self.devices.list_devices(user_id), key=lambda d: d.device_id):
            entry: JsonDict = {"device_id": device.device_id}
            if device.device_id in device_keys:
                entry["keys"] = _without_display_name(device_keys[device.device_id])
            devices.append(entry)
        # The user's own last change, which the prev_id of their next m.device_list_update names:
        # with the global position a peer would see a gap after every update and refetch the list.
        last_change = await self.e2e_keys.previous_change(user_id, self.e2e_keys.stream.current() + 1)
        out: JsonDict = {"user_id": user_id, "stream_id": last_change or 0, "devices": devices}
        if user_id in keys["master_keys"]:
            out["master_key"] = keys["master_keys"][user_id]
        if user_id in keys["self_signing_keys"]:
            out["self_signing_key"] = keys["self_signing_keys"][user_id]
        return out

    # POST /user/keys/query

    async def query_keys(self, wanted: dict[str, list[str]]) -> JsonDict:
        local = {u: d for u, d in wanted.items() if _is_local(u, self.server_name)}
        keys = await self.e2e_keys.query(_NO_LOCAL_REQUESTER, local)
        return {
            "device_keys": {
                user: {device: _without_display_name(k) for device, k in devices.items()}
                for user, devices in keys["device_keys"].items()
            },
            "master_keys": keys["master_keys"],
            "self_signing_keys": keys["self_signing_keys"],
        }

    # POST /user/keys/claim

    async def claim_keys(self, wanted: dict[str, dict[str, str]]) -> JsonDict:
        local = {u: d for u, d in wanted.items() if _is_local(u, self.server_name)}
        return {"one_time_keys": (await self.e2e_keys.claim(local))["one_time_keys"]}


def _is_local(user_id: str, server_name: str) -> bool:
    try:
        return ids.parse_user_id(user_id).server_name == server_name
    except ids.InvalidIdError:
        return False
