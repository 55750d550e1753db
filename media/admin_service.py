"""The media admin: usage, deletion, purges, quarantine and protection, for the admin API and the CLI.

Synapse's admin API (docs/admin_api/media_admin_api.md) is served by media/admin.py;
`homeserver media ...` commands call this too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.errors import invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.clock import now_ms
from homeserver.services.container import Services
from homeserver.storage.admin_media import MediaProtectionStore
from homeserver.storage.media import LocalMedia, MediaStore, RemoteMedia
# USAGE_ORDER and USER_MEDIA_ORDER (the sort keys the listings accept) are imported from here by the routes.
from homeserver.storage.media_admin import (  # noqa: F401
    USAGE_ORDER, USER_MEDIA_ORDER, MediaAdminStore, UserMediaItem, UserUsage,
)
from homeserver.storage.users import UserStore
from media.app import build_repository
from media.names import check_mxc_parts
from media.repository import MediaRepository


@dataclasses.dataclass(frozen=True)
class ParsedMxc:
    server_name: str
    media_id: str


def parse_mxc(uri: str) -> ParsedMxc:
    """mxc://<server name>/<media id>, as admins paste it from a client."""
    if not uri.startswith("mxc://"):
        raise invalid_param("Expected an mxc:// URI")
    server_name, _, media_id = uri.removeprefix("mxc://").partition("/")
    check_mxc_parts(server_name, media_id)
    return ParsedMxc(server_name, media_id)


class MediaAdmin:
    """Usage, deletion, purges, quarantine and protection of media, for the admin API and the CLI."""

    def __init__(self, server_name: str, repository: MediaRepository, media: MediaStore,
                 admin_store: MediaAdminStore, users: UserStore, protection: MediaProtectionStore):
        self.server_name = server_name
        self.repository = repository
        self.media = media
        self.admin_store = admin_store
        self.users = users
        self.protection = protection

    @classmethod
    def for_services(cls, services: Services, repository: MediaRepository | None = None) -> "MediaAdmin":
        """For the admin commands, which run without the app, repository is built here."""
        return cls(
            services.server_name, repository or build_repository(services), services.media,
            MediaAdminStore(services.db), services.users, MediaProtectionStore(services.db),
        )

    def is_local(self, server_name: str) -> bool:
        return server_name == self.server_name

    async def usage(self, *, order_by: str = "user_id", descending: bool = False, limit: int = 100,
                    offset: int = 0, from_ts: int | None = None, until_ts: int | None = None,
                    search_term: str | None = None) -> tuple[list[UserUsage], int]:
        return await self.admin_store.usage_by_user(
            order_by=order_by, descending=descending, limit=limit, offset=offset,
            from_ts=from_ts, until_ts=until_ts, search_term=search_term,
        )

    async def check_local_user(self, user_id: str) -> None:
        if not ids.is_valid_user_id(user_id):
            raise invalid_param("Not a valid user id")
        if ids.server_name_of(user_id) != self.server_name:
            raise invalid_param("Can only look up local users")
        if await self.users.get_user(user_id) is None:
            raise not_found("Unknown user")

    async def user_media(self, user_id: str, *, order_by: str = "created_ts", descending: bool = True,
                         limit: int = 100, offset: int = 0) -> tuple[list[UserMediaItem], int]:
        await self.check_local_user(user_id)
        return await self.admin_store.user_media(
            user_id, order_by=order_by, descending=descending, limit=limit, offset=offset,
        )

    async def bytes_stored(self) -> int:
        return await self.media.bytes_stored()

    async def delete(self, server_name: str, media_id: str) -> bool:
        """Delete one local item, its thumbnails and (when unreferenced) its files."""
        if not self.is_local(server_name):
            raise invalid_param("Can only delete local media")
        return await self.repository.delete_local(media_id)

    async def delete_many(self, media_ids: list[str]) -> list[str]:
        deleted = []
        for media_id in media_ids:
            if await self.repository.delete_local(media_id):
                deleted.append(media_id)
        return deleted

    async def purge_candidates(
        self, before_ts: int, *, by_access: bool, size_gt: int = 0, keep_profiles: bool = True
    ) -> list[str]:
        """Local media uploaded (by_access: last used) before the time; avatars kept with
        keep_profiles, protected media always (as Synapse's deletion of old media)."""
        candidates = await self.admin_store.local_media_to_purge(
            self.server_name, before_ts, by_access=by_access, size_gt=size_gt, keep_profiles=keep_profiles,
        )
        protected = await self.protection.protected_among(candidates)
        return [media_id for media_id in candidates if media_id not in protected]

    async def set_protected(self, media_id: str, by: str | None) -> bool:
        """Protect local media (by: the admin's user id) or lift the protection (by None);
        False when it is unknown."""
        if by is None:
            return await self.protection.unprotect(media_id)
        return await self.protection.protect(media_id, by, now_ms())

    async def protected_among(self, media_ids: list[str]) -> set[str]:
        return await self.protection.protected_among(media_ids)

    async def purge_local(
        self, before_ts: int, *, by_access: bool, size_gt: int = 0, keep_profiles: bool = True
    ) -> list[str]:
        candidates = await self.purge_candidates(
            before_ts, by_access=by_access, size_gt=size_gt, keep_profiles=keep_profiles,
        )
        return await self.delete_many(candidates)

    async def purge_remote(self, before_ts: int) -> int:
        return await self.repository.purge_remote_cache(before_ts)

    async def set_quarantine(self, server_name: str, media_id: str, by: str | None) -> bool:
        """Quarantine (by: the admin) or release (by None) an item; False when it is unknown.
        Protected local media is not quarantined, and the answer is the same, as Synapse's
        (media_admin_api.md: protection holds against the quarantine APIs). Other items with
        the same bytes are still quarantined with it even when protected (Synapse skips them)."""
        origin = None if self.is_local(server_name) else server_name
        if origin is None and by is not None and await self.protection.protected_among([media_id]):
            return True
        return await self.admin_store.set_quarantine(origin, media_id, by)

    async def quarantine_user_media(self, user_id: str, by: str) -> int:
        """Every local upload of a local user, but the protected ones; how many were quarantined."""
        await self.check_local_user(user_id)
        count = 0
        for media_id in await self.protection.unprotected_media_of_user(user_id):
            if await self.admin_store.set_quarantine(None, media_id, by):
                count += 1
        return count

    async def media_info(self, server_name: str, media_id: str) -> dict[str, Any] | None:
        if self.is_local(server_name):
            local = await self.media.get_local(media_id)
            if local is None or not local.uploaded:
                return None
            protected = bool(await self.protection.protected_among([media_id]))
            return _local_info(self.server_name, local, protected)
        remote = await self.media.get_remote(server_name, media_id)
        return _remote_info(remote) if remote is not None else None


def _local_info(server_name: str, media: LocalMedia, protected: bool) -> dict[str, Any]:
    return {
        "media_origin": server_name, "user_id": media.user_id, "media_id": media.media_id,
        "media_type": media.content_type, "media_length": media.size, "upload_name": media.upload_name,
        "created_ts": media.created_ts, "filesystem_id": media.sha256, "url_cache": None,
        "last_access_ts": media.last_access_ts, "quarantined_by": media.quarantined_by,
        "authenticated": True, "safe_from_quarantine": protected, "sha256": media.sha256,
    }


def _remote_info(media: RemoteMedia) -> dict[str, Any]:
    return {
        "media_origin": media.origin, "user_id": None, "media_id": media.media_id,
        "media_type": media.content_type, "media_length": media.size, "upload_name": media.upload_name,
        "created_ts": media.fetched_ts, "filesystem_id": media.sha256, "url_cache": None,
        "last_access_ts": media.last_access_ts, "quarantined_by": media.quarantined_by,
        "authenticated": True, "safe_from_quarantine": False, "sha256": media.sha256,
    }


def item_json(item: UserMediaItem, protected: bool = False) -> dict[str, Any]:
    return {**dataclasses.asdict(item), "safe_from_quarantine": protected}
