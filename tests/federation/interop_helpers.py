"""Small helpers of the interop tests: users on our server, and /sync predicates."""

from __future__ import annotations

from typing import Any, Callable

from tests.e2e.server_process import ServerProcess
from tests.federation.synapse_peer import SynapseClient, SynapseUser

PASSWORD = "correct horse battery staple"


async def register_ours(server: ServerProcess, localpart: str) -> SynapseUser:
    """A user on our server (registration is open in the test config), as (user id, token)."""
    async with SynapseClient(server.base_url) as c:
        body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        answer = await c.call("POST", "/_matrix/client/v3/register", body)
    return SynapseUser(answer["user_id"], answer["access_token"])


def our_client(server: ServerProcess, user: SynapseUser) -> SynapseClient:
    # The same small Client-Server API client works against either server.
    return SynapseClient(server.base_url, user.access_token)


def timeline_events(room_id: str, event_type: str | None = None, **content: Any) -> Callable[[dict], list]:
    """A /sync predicate: the joined room's timeline events of a type (whose content has these values)."""
    def find(sync: dict) -> list:
        timeline = sync.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
        return [
            e for e in timeline.get("events", [])
            if (event_type is None or e["type"] == event_type)
            and all(e.get("content", {}).get(k) == v for k, v in content.items())
        ]
    return find


def invited_to(room_id: str) -> Callable[[dict], Any]:
    def find(sync: dict) -> Any:
        return sync.get("rooms", {}).get("invite", {}).get(room_id)
    return find


def joined(room_id: str) -> Callable[[dict], Any]:
    def find(sync: dict) -> Any:
        return sync.get("rooms", {}).get("join", {}).get(room_id)
    return find
