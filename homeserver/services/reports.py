"""Reporting content: users report events, rooms and users; server admins read the reports.

Spec: https://spec.matrix.org/v1.19/client-server-api/#reporting-content
The admin side is shaped like Synapse's event reports API (docs/admin_api/event_reports.md);
room and user reports, which Synapse's API does not list, have their own lists beside it
in the same shape (see homeserver/client/reports.py).
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import invalid_param, not_found
from homeserver.protocol import ids
from homeserver.services.clock import now_ms
from homeserver.services.event_views import EventViews
from homeserver.storage.events import EventStore
from homeserver.storage.reports import Report, ReportStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore
from homeserver.storage.users import UserStore

MAX_REASON_CHARS = 10_000
# Spec: "-100 is most offensive and 0 is inoffensive".
MIN_SCORE, MAX_SCORE = -100, 0


def _check_reason(reason: str | None) -> None:
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise invalid_param(f"reason may not exceed {MAX_REASON_CHARS} characters")


class ReportService:
    def __init__(
        self, server_name: str, store: ReportStore, events: EventStore, state: StateStore, rooms: RoomStore,
        users: UserStore, views: EventViews,
    ):
        self.server_name = server_name
        self.store = store
        self.events = events
        self.state = state
        self.rooms = rooms
        self.users = users
        self.views = views

    # Reporting (any user)

    async def report_event(
        self, reporter: str, room_id: str, event_id: str, reason: str | None, score: int | None
    ) -> int:
        """Spec (v1.8): the reporter must be joined to the room; 404 whether the event is
        unknown or the reporter not joined, so that a report reveals nothing of a room."""
        _check_reason(reason)
        if score is not None and not MIN_SCORE <= score <= MAX_SCORE:
            raise invalid_param(f"score must be between {MIN_SCORE} and {MAX_SCORE}")
        hidden = not_found("The event was not found or you are not joined to the room")
        membership = await self.state.get_membership(room_id, reporter)
        if membership is None or membership[0] != "join":
            raise hidden
        event = await self.events.get_event(event_id)
        if event is None or event.room_id != room_id or event.internal.get("rejected"):
            raise hidden
        if not await self.views.visible_to(reporter, [event], True):
            raise hidden
        return await self.store.add(
            "event", reporter, now_ms(), room_id=room_id, event_id=event_id, target_user_id=event.sender,
            reason=reason, score=score,
        )

    async def report_room(self, reporter: str, room_id: str, reason: str | None) -> int:
        """Spec (v1.13): servers MUST NOT require the reporter to be joined (rooms are seen
        through directories and invites); the room must be one this server knows."""
        _check_reason(reason)
        if not await self.rooms.room_exists(room_id):
            raise not_found("The room was not found")
        return await self.store.add("room", reporter, now_ms(), room_id=room_id, reason=reason)

    async def report_user(self, reporter: str, user_id: str, reason: str | None) -> int:
        """Spec (v1.14). Other servers' users cannot be checked here, so they are taken as named."""
        _check_reason(reason)
        if not ids.is_valid_user_id(user_id):
            raise invalid_param("Invalid user id")
        if ids.server_name_of(user_id) == self.server_name and await self.users.get_user(user_id) is None:
            raise not_found("The user was not found")
        return await self.store.add("user", reporter, now_ms(), target_user_id=user_id, reason=reason)

    # Reading (server admins)

    async def page(
        self, kind: str, offset: int, limit: int, newest_first: bool, *, reporter: str | None = None,
        room_id: str | None = None, target_user_id: str | None = None,
    ) -> dict[str, Any]:
        reports, total = await self.store.page(
            kind, offset, limit, newest_first, reporter_contains=reporter, room_contains=room_id,
            target_contains=target_user_id,
        )
        rooms: dict[str, dict[str, Any]] = {}
        listed = [await self._render(report, rooms) for report in reports]
        result: dict[str, Any] = {f"{kind}_reports": listed, "total": total}
        if offset + len(reports) < total:
            result["next_token"] = offset + len(reports)
        return result

    async def get(self, kind: str, report_id: int) -> dict[str, Any]:
        report = await self.store.get(report_id)
        if report is None or report.kind != kind:
            raise not_found("Report not found")
        rendered = await self._render(report, {})
        if kind == "event" and report.event_id is not None:
            event = await self.events.get_event(report.event_id)
            rendered["event_json"] = (await self.views.serialize([event]))[0] if event is not None else None
        return rendered

    async def delete(self, kind: str, report_id: int) -> None:
        if not await self.store.delete(kind, report_id):
            raise not_found("Report not found")

    async def _render(self, report: Report, rooms: dict[str, dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": report.id, "received_ts": report.received_ts, "user_id": report.reporter,
            "reason": report.reason,
        }
        if report.room_id is not None:
            out["room_id"] = report.room_id
            if report.room_id not in rooms:
                rooms[report.room_id] = await self._room_names(report.room_id)
            out.update(rooms[report.room_id])
        if report.kind == "event":
            out.update(event_id=report.event_id, sender=report.target_user_id, score=report.score)
        elif report.kind == "user":
            out["target_user_id"] = report.target_user_id
        return out

    async def _room_names(self, room_id: str) -> dict[str, Any]:
        """The room's current name and canonical alias, as Synapse lists them."""
        out: dict[str, Any] = {"name": None, "canonical_alias": None}
        for event_type, key, field in (("m.room.name", "name", "name"),
                                       ("m.room.canonical_alias", "alias", "canonical_alias")):
            event_id = await self.state.get_current_state_event_id(room_id, event_type, "")
            event = await self.events.get_event(event_id) if event_id else None
            value = event.content.get(key) if event is not None else None
            out[field] = value if isinstance(value, str) else None
        return out
