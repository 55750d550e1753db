"""Helpers shared by the typing, receipt and read marker tests."""

from __future__ import annotations

from typing import Any

from tests.helpers import Response, User

V3 = "/_matrix/client/v3"


async def room_with(alice: User, *others: User) -> str:
    room = await alice.create_room(preset="public_chat")
    for other in others:
        await other.join(room)
    return room


def ephemeral(sync: Response, room_id: str) -> list[dict[str, Any]]:
    """The room's ephemeral events in a sync, [] when the room is not in it."""
    section = sync["rooms"]["join"].get(room_id)
    return section["ephemeral"]["events"] if section is not None else []


def typing_users(sync: Response, room_id: str) -> list[str] | None:
    """The user ids of the room's m.typing event, None when the sync carries none."""
    found = [e for e in ephemeral(sync, room_id) if e["type"] == "m.typing"]
    assert len(found) <= 1, found
    return found[0]["content"]["user_ids"] if found else None


def receipt_events(sync: Response, room_id: str) -> list[dict[str, Any]]:
    """The contents of the room's m.receipt events (one per thread)."""
    return [e["content"] for e in ephemeral(sync, room_id) if e["type"] == "m.receipt"]


def receipts(sync: Response, room_id: str) -> dict[str, Any] | None:
    """The room's m.receipt contents merged into one, None when the sync carries none."""
    found = receipt_events(sync, room_id)
    if not found:
        return None
    merged: dict[str, Any] = {}
    for content in found:
        for event_id, by_type in content.items():
            for receipt_type, by_user in by_type.items():
                into = merged.setdefault(event_id, {}).setdefault(receipt_type, {})
                assert not set(into) & set(by_user), found
                into.update(by_user)
    return merged


async def set_typing(user: User, room_id: str, typing: bool, timeout: int | None = None) -> Response:
    body: dict[str, Any] = {"typing": typing}
    if timeout is not None:
        body["timeout"] = timeout
    return await user.put(f"{V3}/rooms/{room_id}/typing/{user.user_id}", body)


async def send_receipt(
    user: User, room_id: str, event_id: str, receipt_type: str = "m.read", body: dict[str, Any] | None = None,
) -> Response:
    return await user.post(f"{V3}/rooms/{room_id}/receipt/{receipt_type}/{event_id}", body or {})
