"""`homeserver export-data`: one user's data, written to a folder in the layout of docs/your-data.md.

Events are read with the same service as GET /rooms/{roomId}/messages, page by page, as
the user: history visibility applies, and each event has the client format. Nothing
holds a room's whole history in memory; each page is appended to the room's file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from homeserver.errors import MatrixError
from homeserver.protocol.filters import EventFilter
from homeserver.services.auth import Requester
from homeserver.services.clock import now_ms
from homeserver.services.room_events import RoomEventsService
from homeserver.storage.devices import DeviceStore
from homeserver.storage.state import StateStore
from homeserver.storage.user_data import UserDataStore
from homeserver.storage.users import UserStore

if TYPE_CHECKING:
    from homeserver.services.container import Services

FORMAT = "homeserver-user-export"
FORMAT_VERSION = 1
# Events per /messages page read for the export.
PAGE = 200


class MediaFiles(Protocol):
    """Where a stored file's bytes are (media/store.py ContentStore)."""

    def path(self, sha256: str) -> Path: ...


@dataclasses.dataclass
class ExportSummary:
    directory: Path
    rooms: int = 0
    events: int = 0
    media: int = 0


class ExportService:
    def __init__(self, server_name: str, users: UserStore, user_data: UserDataStore, devices: DeviceStore,
                 state: StateStore, room_events: RoomEventsService):
        self.server_name = server_name
        self.users = users
        self.user_data = user_data
        self.devices = devices
        self.state = state
        self.room_events = room_events

    @classmethod
    def for_services(cls, services: "Services") -> "ExportService":
        return cls(services.server_name, services.users, UserDataStore(services.db), services.devices,
                   services.state, services.room_events)

    async def export(self, user_id: str, directory: Path, media_files: MediaFiles | None) -> ExportSummary:
        account = await self.user_data.account(user_id)
        if account is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown user {user_id}")
        if directory.exists() and any(directory.iterdir()):
            raise MatrixError(400, "M_INVALID_PARAM", f"{directory} is not empty")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        summary = ExportSummary(directory)
        _write_json(directory / "manifest.json", {
            "format": FORMAT, "version": FORMAT_VERSION, "user_id": user_id,
            "server_name": self.server_name, "exported_ts": now_ms(),
        })
        # The account row without its password hash; devices without their tokens.
        _write_json(directory / "account.json", dataclasses.asdict(account))
        _write_json(directory / "profile.json", await self.users.get_profile(user_id) or {})
        _write_json(directory / "account_data.json", await self._account_data(user_id))
        _write_json(directory / "devices.json", [
            {"device_id": d.device_id, "display_name": d.display_name,
             "last_seen_ts": d.last_seen_ts, "last_seen_ip": d.last_seen_ip}
            for d in await self.devices.list_devices(user_id)
        ])
        rooms = await self._rooms(user_id, directory, summary)
        _write_json(directory / "rooms.json", rooms)
        _write_json(directory / "media.json", await self._media(user_id, directory, media_files, summary))
        return summary

    async def _account_data(self, user_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"global": {}, "rooms": {}}
        for room_id, data_type, content in await self.user_data.account_data(user_id):
            if room_id:
                out["rooms"].setdefault(room_id, {})[data_type] = content
            else:
                out["global"][data_type] = content
        return out

    async def _rooms(self, user_id: str, directory: Path, summary: ExportSummary) -> list[dict[str, Any]]:
        requester = Requester(user_id=user_id, device_id="", is_admin=False, token_hash=b"")
        memberships = await self.state.get_rooms_for_user(user_id)
        (directory / "rooms").mkdir(mode=0o700)
        rooms = []
        for room_id in await self.user_data.rooms_ever_in(user_id):
            membership = memberships.get(room_id, (None, None))[0]
            entry: dict[str, Any] = {"room_id": room_id, "membership": membership, "events_file": None,
                                     "event_count": 0}
            name = f"rooms/{quote(room_id, safe='')}.jsonl"
            try:
                count = await self._write_room_events(requester, room_id, directory / name)
            except MatrixError:
                # Invited, knocking or never joined: no history the user may read.
                count = None
            if count is not None:
                entry.update(events_file=name, event_count=count)
                summary.events += count
            rooms.append(entry)
        summary.rooms = len(rooms)
        return rooms

    async def _write_room_events(self, requester: Requester, room_id: str, path: Path) -> int:
        """Page forward through the room as the user does with /messages; one JSON line per event."""
        count = 0
        token: str | None = None
        with path.open("w", encoding="utf-8") as out:
            while True:
                page = await self.room_events.messages(
                    requester, room_id, token, None, backwards=False, limit=PAGE, event_filter=EventFilter(),
                )
                for event in page["chunk"]:
                    out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += len(page["chunk"])
                token = page.get("end")
                if token is None:
                    return count

    async def _media(self, user_id: str, directory: Path, files: MediaFiles | None,
                     summary: ExportSummary) -> list[dict[str, Any]]:
        (directory / "media").mkdir(mode=0o700)
        out = []
        for item in await self.user_data.uploaded_media(user_id):
            entry: dict[str, Any] = {
                "mxc": f"mxc://{self.server_name}/{item.media_id}", "media_id": item.media_id,
                "content_type": item.content_type, "upload_name": item.upload_name, "size": item.size,
                "created_ts": item.created_ts, "sha256": item.sha256, "file": None,
            }
            source = files.path(item.sha256) if files is not None else None
            if source is not None and source.is_file():
                target = f"media/{item.media_id}"
                # Copied in a thread, in chunks: a large video never sits in memory.
                await asyncio.to_thread(shutil.copyfile, source, directory / target)
                entry["file"] = target
                summary.media += 1
            out.append(entry)
        return out


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
