"""Server-side key backups: the client's encrypted room keys, kept per backup version.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
# RoomKey is also what the routes build and hand in: they import it from here.
from homeserver.storage.key_backup import BackupVersion, KeyBackupStore, RoomKey

JsonDict = dict[str, Any]

MAX_VERSION = 2**63 - 1


def parse_version(version: str) -> int:
    """A version string of ours; anything else names no backup."""
    if not version.isascii() or not version.isdigit() or int(version) > MAX_VERSION:
        raise not_found("Unknown backup version")
    return int(version)


def version_json(found: BackupVersion) -> JsonDict:
    return {
        "algorithm": found.algorithm,
        "auth_data": found.auth_data,
        "count": found.count,
        "etag": str(found.etag),
        "version": str(found.version),
    }


class KeyBackupService:
    def __init__(self, store: KeyBackupStore):
        self.store = store

    async def create_version(self, user_id: str, algorithm: str, auth_data: JsonDict) -> str:
        return str(await self.store.create_version(user_id, algorithm, auth_data))

    async def get_version(self, user_id: str, version: str | None) -> JsonDict:
        found = await self.store.get_version(user_id, parse_version(version) if version is not None else None)
        if found is None:
            # The spec's words for "no backup", which Element relies on.
            raise not_found("No current backup version" if version is None else "Unknown backup version")
        return version_json(found)

    async def update_version(self, user_id: str, version: str, body: JsonDict) -> None:
        found = await self._version(user_id, version)
        if "version" in body and body["version"] != version:
            raise invalid_param("The version in the body does not match the path")
        if body.get("algorithm") != found.algorithm:
            raise invalid_param("Algorithm does not match")
        await self.store.update_auth_data(user_id, found.version, body["auth_data"])

    async def delete_version(self, user_id: str, version: str) -> None:
        if not await self.store.delete_version(user_id, parse_version(version)):
            raise not_found("Unknown backup version")

    async def put_keys(self, user_id: str, version: str, keys: list[RoomKey]) -> JsonDict:
        current = await self.store.get_version(user_id, None)
        if current is None or str(current.version) != version:
            # Keys go to the current backup only, so a client with an old version learns of the new one.
            raise MatrixError(
                403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.",
                **({"current_version": str(current.version)} if current else {}),
            )
        await self.store.put_keys(user_id, current.version, keys)
        return await self._count_and_etag(user_id, current.version)

    async def get_keys(self, user_id: str, version: str, room_id: str | None, session_id: str | None) -> list[RoomKey]:
        found = await self._version(user_id, version)
        return await self.store.get_keys(user_id, found.version, room_id, session_id)

    async def delete_keys(self, user_id: str, version: str, room_id: str | None, session_id: str | None) -> JsonDict:
        found = await self._version(user_id, version)
        await self.store.delete_keys(user_id, found.version, room_id, session_id)
        return await self._count_and_etag(user_id, found.version)

    async def _version(self, user_id: str, version: str) -> BackupVersion:
        found = await self.store.get_version(user_id, parse_version(version))
        if found is None:
            raise not_found("Unknown backup version")
        return found

    async def _count_and_etag(self, user_id: str, version: int) -> JsonDict:
        found = await self.store.get_version(user_id, version)
        assert found is not None
        return {"count": found.count, "etag": str(found.etag)}
