"""Our clients' questions about other servers' users: GET /query/profile on their server.

Spec: https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1queryprofile
Answers, and "no such profile", are kept for a short while (PROFILE_CACHE_MS), so
that a client rendering a member list does not ask the same server over and over.
Errors follow Synapse's: the peer's 403 and 404 are passed on, anything else it
answers is 502 (Synapse passes a 5xx on; a failing peer is not our 500), and an
unreachable server is 502 "Failed to fetch profile".
(Aliases of other servers are looked up by federation/joins.py::RemoteDirectory.)
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from homeserver.errors import MatrixError
from homeserver.protocol import ids

from federation.client import FederationError
from federation.context import Federation
from federation.transactions import TransactionHandler

log = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
PROFILE_CACHE_MS = 60_000
PROFILE_CACHE_SIZE = 10_000


class RemoteProfiles:
    def __init__(self, fed: Federation):
        self.fed = fed
        # user id -> (expiry, the profile or None for "not found")
        self._cache: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()

    async def lookup(self, user_id: str) -> dict[str, Any]:
        cached = self._cache.get(user_id)
        found = cached[1] if cached is not None and cached[0] > time.monotonic() else await self._fetch(user_id)
        if found is None:
            raise MatrixError(404, "M_NOT_FOUND", "Profile was not found")
        return dict(found)

    async def _fetch(self, user_id: str) -> dict[str, Any] | None:
        server = ids.server_name_of(user_id)
        if server is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
        try:
            answer = await self.fed.client.get_json(server, f"{V1}/query/profile", {"user_id": user_id})
        except FederationError as e:
            if e.status != 404:
                # Not remembered: the next ask may succeed.
                log.info("profile of %s: %s answered %s %s", user_id, server, e.status, e.errcode)
                raise _peer_error(e)
            found = None
        except MatrixError:
            raise
        except Exception as e:  # FederationUnreachable and its kinds
            log.info("profile of %s: %s unreachable: %r", user_id, server, e)
            raise MatrixError(502, "M_UNKNOWN", "Failed to fetch profile")
        else:
            if not isinstance(answer, dict):
                raise MatrixError(502, "M_UNKNOWN", "Failed to fetch profile")
            found = {k: v for k, v in answer.items()
                     if k not in ("displayname", "avatar_url") or isinstance(v, str)}
        self._remember(user_id, found)
        return found

    def _remember(self, user_id: str, found: dict[str, Any] | None) -> None:
        self._cache[user_id] = (time.monotonic() + PROFILE_CACHE_MS / 1000, found)
        self._cache.move_to_end(user_id)
        while len(self._cache) > PROFILE_CACHE_SIZE:
            self._cache.popitem(last=False)


def _peer_error(e: FederationError) -> MatrixError:
    body = e.body if isinstance(e.body, dict) else {}
    if e.status == 403:
        message = body.get("error") if isinstance(body.get("error"), str) else "Forbidden"
        return MatrixError(403, e.errcode or "M_FORBIDDEN", message)
    return MatrixError(502, "M_UNKNOWN", "Failed to fetch profile")


def install(fed: Federation, transactions: TransactionHandler) -> None:
    fed.services.profiles.remote_lookup = RemoteProfiles(fed).lookup
