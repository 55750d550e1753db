"""Helpers of the admin API tests: an admin user, paths, the shape synapse-admin reads."""

from __future__ import annotations

from urllib.parse import quote

from homeserver.admin.base import ADMIN_SERVICES

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"

# Fields synapse-admin's dataProvider (src/synapse/dataProvider.ts) reads from each record.
USER_LIST_FIELDS = {"name", "is_guest", "admin", "user_type", "deactivated", "shadow_banned", "displayname",
                    "avatar_url", "creation_ts", "locked", "erased"}
USER_FIELDS = USER_LIST_FIELDS | {"threepids", "external_ids"}
DEVICE_FIELDS = {"device_id", "display_name", "last_seen_ip", "last_seen_user_agent", "last_seen_ts", "user_id"}
ROOM_FIELDS = {"room_id", "name", "canonical_alias", "joined_members", "joined_local_members", "version",
               "creator", "encryption", "federatable", "public", "join_rules", "guest_access",
               "history_visibility", "state_events", "room_type"}
TOKEN_FIELDS = {"token", "uses_allowed", "pending", "completed", "expiry_time"}


def q(identifier: str) -> str:
    return quote(identifier, safe="")


async def make_admin(api, name: str = "admin"):
    admin = await api.register(name)
    await api.services.users.set_admin(admin.user_id, True)
    return admin


def admin_services(api):
    return api.client.server.app[ADMIN_SERVICES]


async def assert_admin_only(api, method: str, path: str, body=None, user=None):
    """No token: 401 M_MISSING_TOKEN; a non-admin's token: 403 M_FORBIDDEN."""
    r = await api.request(method, path, body)
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN", (method, path, r)
    if user is None:
        user = await api.register(f"nobody{abs(hash((method, path))) % 10**8}")
    r = await user.request(method, path, body)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", (method, path, r)
