"""What the auth rule modules share: the error, and each room version's rule numbers.

The spec numbers its rules differently per room version (v6 drops the aliases
rule, v8 adds a membership sub-rule, v10 and v12 add power level sub-rules, v12
adds a room id rule), so the numbers in error messages come from the room
version's flags, and a reader can hold the message next to that version's list.
"""

from __future__ import annotations

import dataclasses
import functools

from homeserver.protocol.room_versions import RoomVersion


class AuthError(Exception):
    """The event is not allowed; the message names the spec rule that refused it."""


def domain_of(identifier: object) -> str | None:
    """The server part of a user, room (before v12) or event (v1, v2) id."""
    if not isinstance(identifier, str):
        return None
    _, sep, domain = identifier.partition(":")
    return domain if sep else None


@dataclasses.dataclass(frozen=True)
class RuleNumbers:
    # Top-level rules. None: the rule does not exist in this room version.
    room_id: int | None
    auth_events: int
    federate: int
    aliases: int | None
    member: int
    sender_joined: int
    third_party_invite: int
    required_level: int
    user_state_key: int
    power_levels: int
    redaction: int | None
    # Sub-rules of the membership rule.
    join: int
    invite: int
    leave: int
    ban: int
    knock: int | None
    unknown_membership: int
    join_otherwise: int
    # Sub-rules of the power levels rule.
    pl_users: int
    pl_named: int
    pl_map_old: int
    pl_map_new: int
    pl_users_old: int
    pl_users_new: int

    @staticmethod
    @functools.cache
    def of(room_version: RoomVersion) -> RuleNumbers:
        top = iter(range(2, 20))
        room_id = next(top) if room_version.room_id_from_create_event else None
        auth_events = next(top)
        federate = next(top)
        aliases = next(top) if room_version.special_case_aliases_auth else None
        member = next(top)
        # v8 inserts "join_authorised_via_users_server must have signed" as 2.
        m = 1 if room_version.restricted_join_allowed else 0
        knock = 6 + m if room_version.knock_allowed else None
        # v10 inserts two type checks before the users check; v12 one more after it.
        p = 2 if room_version.enforce_int_power_levels else 0
        c = 1 if room_version.privileged_creators else 0
        return RuleNumbers(
            room_id=room_id,
            auth_events=auth_events,
            federate=federate,
            aliases=aliases,
            member=member,
            sender_joined=member + 1,
            third_party_invite=member + 2,
            required_level=member + 3,
            user_state_key=member + 4,
            power_levels=member + 5,
            redaction=member + 6 if room_version.uses_event_id_in_event else None,
            join=2 + m,
            invite=3 + m,
            leave=4 + m,
            ban=5 + m,
            knock=knock,
            unknown_membership=(knock or 5 + m) + 1,
            join_otherwise=6 + m,
            pl_users=1 + p,
            pl_named=3 + p + c,
            pl_map_old=4 + p + c,
            pl_map_new=5 + p + c,
            pl_users_old=6 + p + c,
            pl_users_new=7 + p + c,
        )
