"""Room versions as plain data: one frozen record of rule flags per version.

Code asks ``version.knock_allowed``; it never compares version strings.
Spec: https://spec.matrix.org/v1.19/rooms/
"""

from __future__ import annotations

import dataclasses
import enum


class EventFormat(enum.Enum):
    # v1, v2: the event id is chosen by the origin ("$localpart:server") and sent in the event.
    V1 = 1
    # v3: the event id is "$" + standard unpadded base64 of the reference hash.
    V2 = 2
    # v4+: the event id is "$" + URL-safe unpadded base64 of the reference hash.
    V3 = 3


class StateResAlgorithm(enum.Enum):
    V1 = 1
    V2 = 2
    V2_1 = 3  # room version 12


@dataclasses.dataclass(frozen=True)
class RoomVersion:
    identifier: str
    event_format: EventFormat
    state_res: StateResAlgorithm
    stable: bool = True
    # v1-v5: m.room.aliases events are special-cased in the auth rules.
    special_case_aliases_auth: bool = True
    # v5+: signing keys must be valid at the event's origin_server_ts.
    enforce_key_validity: bool = False
    # v6+: floats and out-of-range integers are rejected; notifications power level checked.
    strict_canonicaljson: bool = False
    limit_notifications_power_levels: bool = False
    # v7+: the knock membership.
    knock_allowed: bool = False
    # v8+: join_rule "restricted" with join_authorised_via_users_server.
    restricted_join_allowed: bool = False
    # v9+: keep join_authorised_via_users_server in redacted member events.
    redaction_keeps_authorising_user: bool = False
    # v10+: power level values must be integers, not strings; "knock_restricted".
    enforce_int_power_levels: bool = False
    knock_restricted_allowed: bool = False
    # v11+: creator is implied by the sender of m.room.create (no content.creator);
    # the redaction algorithm of MSC2176/MSC3821/MSC3989 applies; "redacts" moves to content.
    implicit_room_creator: bool = False
    updated_redaction_rules: bool = False
    redacts_in_content: bool = False
    # v12 ("hydra"): the room id is derived from the create event's id; the create
    # event is not listed in auth_events; creators have infinite power level and
    # additional_creators may name more of them.
    room_id_from_create_event: bool = False
    privileged_creators: bool = False

    @property
    def uses_event_id_in_event(self) -> bool:
        return self.event_format is EventFormat.V1


_V1 = RoomVersion("1", EventFormat.V1, StateResAlgorithm.V1)
_V2 = dataclasses.replace(_V1, identifier="2", state_res=StateResAlgorithm.V2)
_V3 = dataclasses.replace(_V2, identifier="3", event_format=EventFormat.V2)
_V4 = dataclasses.replace(_V3, identifier="4", event_format=EventFormat.V3)
_V5 = dataclasses.replace(_V4, identifier="5", enforce_key_validity=True)
_V6 = dataclasses.replace(
    _V5,
    identifier="6",
    special_case_aliases_auth=False,
    strict_canonicaljson=True,
    limit_notifications_power_levels=True,
)
_V7 = dataclasses.replace(_V6, identifier="7", knock_allowed=True)
_V8 = dataclasses.replace(_V7, identifier="8", restricted_join_allowed=True)
_V9 = dataclasses.replace(_V8, identifier="9", redaction_keeps_authorising_user=True)
_V10 = dataclasses.replace(
    _V9, identifier="10", enforce_int_power_levels=True, knock_restricted_allowed=True
)
_V11 = dataclasses.replace(
    _V10,
    identifier="11",
    implicit_room_creator=True,
    updated_redaction_rules=True,
    redacts_in_content=True,
)
_V12 = dataclasses.replace(
    _V11,
    identifier="12",
    state_res=StateResAlgorithm.V2_1,
    room_id_from_create_event=True,
    privileged_creators=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12)
}

DEFAULT_ROOM_VERSION = _V12


def get_room_version(identifier: str) -> RoomVersion | None:
    return KNOWN_ROOM_VERSIONS.get(identifier)
