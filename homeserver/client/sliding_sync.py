"""Simplified sliding sync (MSC4186): POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync.

The request body is parsed strictly (types), unknown fields are ignored as Synapse does.
Spec: https://github.com/matrix-org/matrix-spec-proposals/pull/4186
"""

from __future__ import annotations

from typing import Annotated, Optional

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from homeserver.client.base import requester, services
from homeserver.http import json_response, parse_model, query_int, read_json_object
from homeserver.services.sliding_sync import ListFilters, ListRequest, SlidingSyncRequest
from homeserver.services.sliding_sync_extensions import ExtensionsRequest, RoomScope
from homeserver.services.sliding_sync_rooms import RoomConfig

routes = web.RouteTableDef()

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
MAX_TIMEOUT_MS = 5 * 60 * 1000
MAX_LISTS = 100
MAX_SUBSCRIPTIONS = 1000
MAX_REQUIRED_STATE = 1000
MAX_RANGES = 100

Pair = Annotated[list[str], Field(min_length=2, max_length=2)]
Range = Annotated[list[Annotated[int, Field(ge=0, le=2**31)]], Field(min_length=2, max_length=2)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Filters(_Model):
    is_dm: Optional[bool] = None
    is_invite: Optional[bool] = None
    is_encrypted: Optional[bool] = None
    spaces: Optional[list[str]] = Field(None, max_length=100)
    room_types: Optional[list[Optional[str]]] = Field(None, max_length=100)
    not_room_types: Optional[list[Optional[str]]] = Field(None, max_length=100)


class _RoomSubscription(_Model):
    required_state: list[Pair] = Field(default_factory=list, max_length=MAX_REQUIRED_STATE)
    timeline_limit: int = Field(0, ge=0)

    def config(self) -> RoomConfig:
        return RoomConfig(frozenset((t, k) for t, k in self.required_state), self.timeline_limit)


class _List(_RoomSubscription):
    ranges: list[Range] = Field(default_factory=list, max_length=MAX_RANGES)
    filters: Optional[_Filters] = None

    @field_validator("ranges")
    @classmethod
    def _ordered(cls, ranges: list[list[int]]) -> list[list[int]]:
        for start, end in ranges:
            if start > end:
                raise ValueError("a range's start must not be past its end")
        return ranges


class _Toggle(_Model):
    enabled: Optional[bool] = False


class _ToDevice(_Toggle):
    since: Optional[str] = None
    limit: Optional[int] = Field(None, ge=0)


class _Scoped(_Toggle):
    lists: Optional[list[str]] = None
    rooms: Optional[list[str]] = None

    def scope(self) -> RoomScope | None:
        if not self.enabled:
            return None
        return RoomScope(tuple(self.lists) if self.lists is not None else None,
                         tuple(self.rooms) if self.rooms is not None else None)


class _Extensions(_Model):
    to_device: Optional[_ToDevice] = None
    e2ee: Optional[_Toggle] = None
    account_data: Optional[_Scoped] = None
    receipts: Optional[_Scoped] = None
    typing: Optional[_Scoped] = None


class _Request(_Model):
    conn_id: Optional[str] = Field(None, max_length=255)
    lists: dict[Annotated[str, Field(max_length=255)], _List] = Field(default_factory=dict, max_length=MAX_LISTS)
    room_subscriptions: dict[str, _RoomSubscription] = Field(default_factory=dict, max_length=MAX_SUBSCRIPTIONS)
    extensions: _Extensions = Field(default_factory=_Extensions)


@routes.post(PATH)
async def sliding_sync(request: web.Request) -> web.Response:
    who = await requester(request)
    body = parse_model(_Request, await read_json_object(request, allow_empty=True))
    timeout_ms = query_int(request, "timeout", default=0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0
    ext = body.extensions
    result = await services(request).sliding_sync.sync(SlidingSyncRequest(
        requester=who,
        conn_id=body.conn_id or "",
        pos=request.query.get("pos"),
        timeout_ms=timeout_ms,
        lists={name: ListRequest(
            ranges=tuple((start, end) for start, end in lst.ranges),
            config=lst.config(),
            filters=_filters(lst.filters),
        ) for name, lst in body.lists.items()},
        room_subscriptions={room_id: sub.config() for room_id, sub in body.room_subscriptions.items()},
        extensions=ExtensionsRequest(
            to_device=bool(ext.to_device and ext.to_device.enabled),
            to_device_since=ext.to_device.since if ext.to_device else None,
            e2ee=bool(ext.e2ee and ext.e2ee.enabled),
            account_data=ext.account_data.scope() if ext.account_data else None,
            receipts=ext.receipts.scope() if ext.receipts else None,
            typing=ext.typing.scope() if ext.typing else None,
        ),
    ))
    return json_response(result)


def _filters(f: _Filters | None) -> ListFilters:
    if f is None:
        return ListFilters()
    return ListFilters(
        is_dm=f.is_dm, is_invite=f.is_invite, is_encrypted=f.is_encrypted,
        spaces=tuple(f.spaces) if f.spaces is not None else None,
        room_types=tuple(f.room_types) if f.room_types is not None else None,
        not_room_types=tuple(f.not_room_types or ()),
    )
