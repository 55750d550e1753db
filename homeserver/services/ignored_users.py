"""Ignoring users: the m.ignored_user_list account data, checked when written and read by
the endpoints that leave the ignored users' events out.

Servers leave out the non-state events of ignored users from /sync timelines, /messages,
/context and /event, do not count them in notifications, and hide their invites; state
events are still sent, so that a room does not look different for having ignored its
sender. The list takes effect at once for every later request; a client that wants the
events it missed while it ignored someone does a fresh /sync (spec: "Ignoring Users").
Spec: https://spec.matrix.org/v1.19/client-server-api/#ignoring-users
"""

from __future__ import annotations

from typing import Any, Iterable

from homeserver.errors import bad_json, invalid_param
from homeserver.protocol import ids
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.cache import LoadingCache

IGNORED_USER_LIST = "m.ignored_user_list"


def check_ignored_user_list(user_id: str, content: dict[str, Any]) -> None:
    """Refuse a list that is not {ignored_users: {user id: {}}}, or that names its owner
    (as Synapse does: ignoring oneself would hide one's own messages)."""
    ignored = content.get("ignored_users")
    if not isinstance(ignored, dict):
        raise bad_json("ignored_users must be an object of user ids")
    for target, value in ignored.items():
        if not ids.is_valid_user_id(target):
            raise invalid_param(f"{target!r} in ignored_users is not a valid user id")
        if target == user_id:
            raise invalid_param("You cannot ignore yourself")
        if not isinstance(value, dict):
            raise bad_json(f"ignored_users[{target!r}] must be an object")


def ignored_in(content: dict[str, Any] | None) -> frozenset[str]:
    """The user ids a stored list names (a list written before validation existed may be
    malformed: what cannot be read ignores no one)."""
    ignored = (content or {}).get("ignored_users")
    if not isinstance(ignored, dict):
        return frozenset()
    return frozenset(u for u in ignored if isinstance(u, str))


class IgnoredUsers:
    """The users a user ignores, read from their account data and kept in a bounded cache
    (every /sync asks, and twice when it counts notifications)."""

    def __init__(self, account_data: AccountDataStore, cache_size: int = 10_000):
        self.account_data = account_data
        self._cache: LoadingCache[str, frozenset[str]] = LoadingCache(cache_size)

    async def ignored_by(self, user_id: str) -> frozenset[str]:
        return await self._cache.get(user_id, self._read)

    async def _read(self, user_id: str) -> frozenset[str]:
        return ignored_in(await self.account_data.get(user_id, GLOBAL, IGNORED_USER_LIST))

    def forget(self, user_ids: Iterable[str] | None = None) -> None:
        """Their account data changed (here, or on another process: ``None`` for anyone's)."""
        self._cache.forget(user_ids)
