"""Helpers for the relationship tests: sending children of events and reading them back."""

from __future__ import annotations

import itertools
from typing import Any

from tests.helpers import Response, User

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"
_txn = itertools.count()


async def send(user: User, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> Response:
    return await user.put(f"{V3}/rooms/{room_id}/send/{event_type}/rel{next(_txn)}", content)


async def sent(user: User, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
    r = await send(user, room_id, content, event_type)
    assert r.status == 200, r
    return r["event_id"]


async def react(user: User, room_id: str, target: str, key: str) -> Response:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}
    return await send(user, room_id, content, "m.reaction")


async def edit(user: User, room_id: str, target: str, body: str) -> str:
    return await sent(user, room_id, {
        "msgtype": "m.text", "body": f"* {body}",
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    })


async def thread_reply(user: User, room_id: str, root: str, body: str) -> str:
    return await sent(user, room_id, {
        "msgtype": "m.text", "body": body,
        "m.relates_to": {
            "rel_type": "m.thread", "event_id": root, "is_falling_back": True,
            "m.in_reply_to": {"event_id": root},
        },
    })


async def reference(user: User, room_id: str, target: str, body: str = "see above") -> str:
    return await sent(user, room_id, {
        "msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.reference", "event_id": target},
    })


async def relations(user: User, room_id: str, event_id: str, *path: str, **params: Any) -> Response:
    suffix = "".join(f"/{p}" for p in path)
    query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
    return await user.get(f"{V1}/rooms/{room_id}/relations/{event_id}{suffix}", params=query)


async def threads(user: User, room_id: str, **params: Any) -> Response:
    return await user.get(f"{V1}/rooms/{room_id}/threads", params={k: str(v) for k, v in params.items()})


async def get_event(user: User, room_id: str, event_id: str) -> dict[str, Any]:
    r = await user.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert r.status == 200, r
    return r.body


def bundled(event: dict[str, Any]) -> dict[str, Any]:
    return event["unsigned"].get("m.relations", {})


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]
