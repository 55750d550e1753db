"""The admin API's reads and writes of local accounts (users v2 list, user types, reactivation)."""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class UserQuery:
    offset: int
    limit: int
    user_id_contains: str | None = None
    # Matches the localpart or the display name (Synapse's `name`); user_id_contains is then ignored.
    name_contains: str | None = None
    include_deactivated: bool = False
    include_locked: bool = False
    admins: bool | None = None
    suspended: bool | None = None
    order_by: str = "name"
    descending: bool = False


@dataclasses.dataclass(frozen=True)
class UserRow:
    user_id: str
    is_admin: bool
    deactivated: bool
    created_ts: int
    suspended: bool
    locked: bool
    user_type: str | None
    displayname: str | None
    avatar_url: str | None
    last_seen_ts: int | None
    erased: bool = False


# order_by values of Synapse's users v2 list -> SQL expressions. Nothing else reaches the ORDER BY.
ORDER_COLUMNS = {
    "name": "u.user_id",
    "is_guest": "false",
    "admin": "u.is_admin",
    "user_type": "u.user_type",
    "deactivated": "u.deactivated",
    "shadow_banned": "false",
    "displayname": "p.displayname",
    "avatar_url": "p.avatar_url",
    "creation_ts": "u.created_ts",
    "last_seen_ts": "last_seen_ts",
    "locked": "u.locked",
    # synapse-admin sorts by its record's id (the user id) when that column is clicked.
    "id": "u.user_id",
}

_COLUMNS = (
    "u.user_id, u.is_admin, u.deactivated, u.created_ts, u.suspended, u.locked, u.user_type,"
    " p.displayname, p.avatar_url,"
    " (SELECT max(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts,"
    " EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = u.user_id) AS erased"
)


def contains_pattern(value: str | None) -> str | None:
    """A case-insensitive LIKE pattern for ``value`` anywhere, its % and _ taken literally."""
    if value is None:
        return None
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class AdminUserStore:
    def __init__(self, db: Database):
        self.db = db

    async def list_users(self, query: UserQuery, server_name: str) -> tuple[list[UserRow], int]:
        """One page of local users, and how many match in all."""
        order = ORDER_COLUMNS[query.order_by]
        direction = "DESC" if query.descending else "ASC"
        nulls = "NULLS LAST" if not query.descending else "NULLS FIRST"
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS}, count(*) OVER () AS total"
            " FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
            " WHERE right(u.user_id, length($1) + 1) = ':' || $1"
            "  AND ($2::text IS NULL OR $3::text IS NOT NULL OR u.user_id ILIKE $2)"
            "  AND ($3::text IS NULL OR split_part(substr(u.user_id, 2), ':', 1) ILIKE $3"
            "       OR p.displayname ILIKE $3)"
            "  AND ($4 OR NOT u.deactivated)"
            "  AND ($5 OR NOT u.locked)"
            "  AND ($6::bool IS NULL OR u.is_admin = $6)"
            "  AND ($7::bool IS NULL OR u.suspended = $7)"
            f" ORDER BY {order} {direction} {nulls}, u.user_id {direction}"
            " LIMIT $8 OFFSET $9",
            server_name, contains_pattern(query.user_id_contains), contains_pattern(query.name_contains),
            query.include_deactivated, query.include_locked, query.admins, query.suspended,
            query.limit, query.offset,
        )
        total = rows[0]["total"] if rows else await self._count_without_page(query, server_name)
        return [_row(r) for r in rows], total

    async def _count_without_page(self, query: UserQuery, server_name: str) -> int:
        # A page past the end has no rows to carry the window count.
        if query.offset == 0:
            return 0
        _, total = await self.list_users(dataclasses.replace(query, offset=0, limit=1), server_name)
        return total

    async def get_user(self, user_id: str) -> UserRow | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
            " WHERE u.user_id = $1",
            user_id,
        )
        return _row(row) if row else None

    async def set_user_type(self, user_id: str, user_type: str | None) -> None:
        await self.db.execute("UPDATE users SET user_type = $2 WHERE user_id = $1", user_id, user_type)

    async def reactivate(self, user_id: str, password_hash: str) -> None:
        await self.db.execute(
            "UPDATE users SET deactivated = false, password_hash = $2 WHERE user_id = $1", user_id, password_hash
        )


def _row(r) -> UserRow:
    return UserRow(
        user_id=r["user_id"], is_admin=r["is_admin"], deactivated=r["deactivated"], created_ts=r["created_ts"],
        suspended=r["suspended"], locked=r["locked"], user_type=r["user_type"], displayname=r["displayname"],
        avatar_url=r["avatar_url"], last_seen_ts=r["last_seen_ts"], erased=r["erased"],
    )
