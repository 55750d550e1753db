"""User directory search. Spec: https://spec.matrix.org/v1.19/client-server-api/#user-directory"""

from __future__ import annotations

from typing import Any

from homeserver.storage.user_directory import UserDirectoryStore

MAX_LIMIT = 50


class UserDirectoryService:
    def __init__(self, store: UserDirectoryStore, search_all_users: bool):
        self.store = store
        self.search_all_users = search_all_users

    async def search(self, searcher: str, term: str, limit: int) -> dict[str, Any]:
        """The response body of POST /user_directory/search."""
        limit = min(limit, MAX_LIMIT)
        term = term.strip()
        # One more than asked tells whether the list was cut.
        found = await self.store.search(searcher, term, limit + 1, self.search_all_users) if term else []
        return {
            "results": [
                {k: v for k, v in (("user_id", e.user_id), ("display_name", e.display_name),
                                    ("avatar_url", e.avatar_url)) if v is not None}
                for e in found[:limit]
            ],
            "limited": len(found) > limit,
        }
