"""Small helpers shared by the /sync, /messages, /context and visibility tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from tests.helpers import Response, User

V3 = "/_matrix/client/v3"


async def send_state(user: User, room_id: str, event_type: str, content: dict[str, Any], state_key: str = "") -> str:
    r = await user.put(f"{V3}/rooms/{room_id}/state/{event_type}/{state_key}", content)
    assert r.status == 200, r
    return r["event_id"]


async def send_event(user: User, room_id: str, event_type: str, content: dict[str, Any], txn_id: str) -> str:
    r = await user.put(f"{V3}/rooms/{room_id}/send/{event_type}/{txn_id}", content)
    assert r.status == 200, r
    return r["event_id"]


async def leave(user: User, room_id: str) -> None:
    r = await user.post(f"{V3}/rooms/{room_id}/leave", {})
    assert r.status == 200, r


async def messages(user: User, room_id: str, filter: dict[str, Any] | None = None, **params: Any) -> Response:
    query = {k: str(v) for k, v in params.items()}
    if filter is not None:
        query["filter"] = json.dumps(filter)
    return await user.get(f"{V3}/rooms/{room_id}/messages", params=query)


async def all_events(user: User, room_id: str) -> list[dict[str, Any]]:
    """Every event of the room the user may see, oldest first, in one /messages call."""
    r = await messages(user, room_id, dir="f", limit=1000)
    assert r.status == 200, r
    return r["chunk"]


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def timeline(sync: Response, room_id: str, section: str = "join") -> list[dict[str, Any]]:
    return sync["rooms"][section][room_id]["timeline"]["events"]


def state(sync: Response, room_id: str, section: str = "join") -> list[dict[str, Any]]:
    return sync["rooms"][section][room_id]["state"]["events"]


def state_keys(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in events if "state_key" in e}


async def until_waiting(services: Any, count: int = 1) -> None:
    """Wait until `count` long polls are parked on the notifier (synchronisation, not a timing assertion)."""
    while services.notifier.waiting_users() < count:
        await asyncio.sleep(0.005)


async def answered_behind_a_lock(db: Any, table: str, request: Awaitable[Response],
                                 made: Callable[[], bool]) -> Response:
    """Run ``request`` while ``table`` is locked against it, until ``made()`` says the reads
    expected despite the lock were made (it fails after 3 s if they are not), and assert
    the request still waits; then let the lock go and return its response."""
    async with db.transaction() as blocker:
        await blocker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        waiting = asyncio.ensure_future(request)
        for _ in range(300):
            if made():
                break
            await asyncio.sleep(0.01)
        assert made()
        assert not waiting.done()
    return await asyncio.wait_for(waiting, 30)
