"""Sync filters: uploaded by clients, kept as sent, named by a number per user.

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.errors import MatrixError, invalid_param
from homeserver.protocol.filters import FilterError, SyncFilter, parse_sync_filter
from homeserver.storage.cache import LruCache
from homeserver.storage.filters import FilterStore

MAX_FILTER_ID = 2**63 - 1


def filter_id_of(raw: str) -> int | None:
    """The filter id we handed out (a non-negative bigint), or None if it cannot be one."""
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_FILTER_ID:
        return None
    return int(raw)


class FilterService:
    def __init__(self, store: FilterStore):
        self.store = store
        # Inline filters as parsed (SyncFilter is immutable): a client sends the same one
        # with every /sync.
        self._inline: LruCache[str, SyncFilter] = LruCache(256)

    async def upload(self, user_id: str, body: dict[str, Any]) -> int:
        try:
            parse_sync_filter(body)
        except FilterError as e:
            raise MatrixError(400, "M_BAD_JSON", f"Invalid filter: {e}")
        return await self.store.add(user_id, body)

    async def get(self, user_id: str, raw_id: str) -> dict[str, Any] | None:
        """The filter as the user uploaded it; None for an id that names none of theirs."""
        filter_id = filter_id_of(raw_id)
        return await self.store.get(user_id, filter_id) if filter_id is not None else None

    async def for_sync(self, user_id: str, raw: str | None) -> SyncFilter:
        """The filter of /sync's ``filter`` parameter: inline JSON or a filter id."""
        if raw is None:
            return SyncFilter()
        try:
            if raw.lstrip().startswith("{"):
                parsed = self._inline.get(raw)
                if parsed is None:
                    parsed = parse_sync_filter(json.loads(raw))
                    self._inline.set(raw, parsed)
                return parsed
            stored = await self.get(user_id, raw)
            if stored is None:
                # A bad query parameter rather than a missing resource (as Synapse answers).
                raise invalid_param("No such filter")
            return parse_sync_filter(stored)
        except (ValueError, RecursionError, FilterError) as e:  # RecursionError: absurdly nested JSON
            raise invalid_param(f"Invalid filter: {e}")
