"""Searching local users by id and display name, for "start a chat" dialogs."""

from __future__ import annotations

import dataclasses

from homeserver.storage.db import Database


@dataclasses.dataclass(frozen=True)
class DirectoryEntry:
    user_id: str
    display_name: str | None
    avatar_url: str | None


class UserDirectoryStore:
    def __init__(self, db: Database):
        self.db = db

    async def search(
        self, searcher: str, term: str, limit: int, all_users: bool
    ) -> list[DirectoryEntry]:
        """Active local users whose id or display name contains ``term``.

        Unless ``all_users``, only those sharing a joined room with the searcher or
        joined to a public room are found (Synapse's default, for privacy). Exact
        and prefix matches come first.
        """
        pattern = "%" + term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self.db.fetch(
            """
            SELECT p.user_id, p.displayname, p.avatar_url
            FROM profiles p JOIN users u USING (user_id)
            WHERE NOT u.deactivated
              AND (lower(p.user_id) LIKE $2 OR lower(coalesce(p.displayname, '')) LIKE $2)
              AND ($4 OR p.user_id = $1 OR EXISTS (
                    SELECT 1 FROM current_state theirs
                    WHERE theirs.type = 'm.room.member' AND theirs.state_key = p.user_id
                      AND theirs.membership = 'join'
                      AND (EXISTS (SELECT 1 FROM current_state mine
                                   WHERE mine.room_id = theirs.room_id AND mine.type = 'm.room.member'
                                     AND mine.state_key = $1 AND mine.membership = 'join')
                           OR EXISTS (SELECT 1 FROM rooms r WHERE r.room_id = theirs.room_id AND r.is_public))))
            ORDER BY (lower(coalesce(p.displayname, '')) LIKE $5 OR lower(p.user_id) LIKE '@' || $5) DESC,
                     p.user_id
            LIMIT $3
            """,
            searcher, pattern, limit, all_users, pattern[1:],
        )
        return [DirectoryEntry(r["user_id"], r["displayname"], r["avatar_url"]) for r in rows]
