"""The authorization rules of room versions 1-12, each rule allowed once and refused once.

Events are built by hand (no signing: the rules do not check signatures) in a
small in-memory room whose state map is what ``check_auth_rules`` reads.
Spec: https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules (and v1-v11)
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from homeserver.protocol.auth_rules import (
    AuthError,
    auth_types_for_event,
    check_auth_events,
    check_auth_rules,
)
from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

ALL = list(KNOWN_ROOM_VERSIONS)


def versions(predicate) -> list[str]:
    return [v for v in ALL if predicate(KNOWN_ROOM_VERSIONS[v])]


ALIASES_SPECIAL = versions(lambda v: v.special_case_aliases_auth)  # 1-5
NO_ALIASES_SPECIAL = versions(lambda v: not v.special_case_aliases_auth)  # 6-12
KNOCK = versions(lambda v: v.knock_allowed)  # 7-12
NO_KNOCK = versions(lambda v: not v.knock_allowed)  # 1-6
RESTRICTED = versions(lambda v: v.restricted_join_allowed)  # 8-12
NO_RESTRICTED = versions(lambda v: not v.restricted_join_allowed)  # 1-7
KNOCK_RESTRICTED = versions(lambda v: v.knock_restricted_allowed)  # 10-12
NO_KNOCK_RESTRICTED_BUT_RESTRICTED = versions(
    lambda v: v.restricted_join_allowed and not v.knock_restricted_allowed
)  # 8, 9
INT_ONLY = versions(lambda v: v.enforce_int_power_levels)  # 10-12
STRINGY = versions(lambda v: not v.enforce_int_power_levels)  # 1-9
FLOATY = versions(lambda v: not v.strict_canonicaljson)  # 1-5
NOTIFICATIONS = versions(lambda v: v.limit_notifications_power_levels)  # 6-12
NO_NOTIFICATIONS = versions(lambda v: not v.limit_notifications_power_levels)  # 1-5
EXPLICIT_CREATOR = versions(lambda v: not v.implicit_room_creator)  # 1-10
IMPLICIT_CREATOR = versions(lambda v: v.implicit_room_creator)  # 11, 12
HYDRA = versions(lambda v: v.privileged_creators)  # 12
PRE_HYDRA = versions(lambda v: not v.privileged_creators)  # 1-11
DOMAIN_EVENT_IDS = versions(lambda v: v.uses_event_id_in_event)  # 1, 2
HASH_EVENT_IDS = versions(lambda v: not v.uses_event_id_in_event)  # 3-12

ALICE = "@alice:a.test"  # the creator
MOD = "@mod:a.test"  # power level 50
BOB = "@bob:b.test"  # power level 0
CAROL = "@carol:c.test"  # power level 0
EVE = "@eve:e.test"  # never in the room unless a test says so

# Event and room ids unique across all rooms of a test run.
_IDS = itertools.count(1)

CREATE = ("m.room.create", "")
POWER_LEVELS = ("m.room.power_levels", "")


class Room:
    """A room's state map, and a maker of events for it."""

    def __init__(
        self, version: str, create_content: dict[str, Any] | None = None, creator: str = ALICE
    ):
        self.version: RoomVersion = KNOWN_ROOM_VERSIONS[version]
        content: dict[str, Any] = {"room_version": version}
        if not self.version.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        create_id = self.new_id()
        create_json: dict[str, Any] = {
            "type": "m.room.create",
            "state_key": "",
            "sender": creator,
            "content": content,
            "auth_events": [],
            "prev_events": [],
            "depth": 1,
            "origin_server_ts": 1,
        }
        if self.version.room_id_from_create_event:
            self.room_id = "!" + create_id[1:]
        else:
            self.room_id = f"!room{next(_IDS)}:" + creator.split(":", 1)[1]
            create_json["room_id"] = self.room_id
        self.create = Event(create_json, create_id, self.version)
        self.state: dict[tuple[str, str], Event] = {CREATE: self.create}
        self.last_id = create_id

    def new_id(self) -> str:
        count = next(_IDS)
        if self.version.uses_event_id_in_event:
            return f"${count}:a.test"
        return "$" + f"{count:043d}"

    def event(
        self,
        event_type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        prev: list[str] | None = None,
        event_id: str | None = None,
        **extra: Any,
    ) -> Event:
        event_json: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "room_id": self.room_id,
            "auth_events": [],
            "prev_events": [self.last_id] if prev is None else prev,
            "depth": len(self.state) + 1,
            "origin_server_ts": len(self.state) + 1,
        }
        if state_key is not None:
            event_json["state_key"] = state_key
        event_json.update(extra)
        return Event(event_json, event_id or self.new_id(), self.version)

    def put(self, event: Event) -> Event:
        self.state[event.state_tuple] = event
        self.last_id = event.event_id
        return event

    def member(
        self, user: str, membership: str, sender: str | None = None, **content: Any
    ) -> Event:
        return self.event(
            "m.room.member", sender or user, {"membership": membership, **content}, user
        )

    def set_member(self, user: str, membership: str, sender: str | None = None) -> Event:
        return self.put(self.member(user, membership, sender))

    def set_state(
        self, event_type: str, content: dict[str, Any], state_key: str = "", sender: str = ALICE
    ) -> Event:
        return self.put(self.event(event_type, sender, content, state_key))

    def power_levels(self, **content: Any) -> dict[str, Any]:
        """The usual levels of these tests, with overrides; never lists v12 creators."""
        users = {MOD: 50}
        if not self.version.privileged_creators:
            users[ALICE] = 100
        base: dict[str, Any] = {"users": users}
        base.update(content)
        return base


def room(
    version: str,
    join_rule: str | None = "public",
    *,
    power_levels: dict | None = None,
    members: dict[str, str] | None = None,
    create_content: dict | None = None,
) -> Room:
    """Alice creates and joins; then power levels, join rules and other members."""
    r = Room(version, create_content)
    r.set_member(ALICE, "join")
    r.set_state("m.room.power_levels", r.power_levels(**(power_levels or {})))
    if join_rule is not None:
        r.set_state("m.room.join_rules", {"join_rule": join_rule})
    for user, membership in (
        members if members is not None else {MOD: "join", BOB: "join"}
    ).items():
        # Bans and invites are sent by Alice; the rest by the user.
        sender = ALICE if membership in ("ban", "invite") else user
        r.set_member(user, membership, sender)
    return r


def allow(r: Room, event: Event) -> None:
    check_auth_rules(event, r.state)


def deny(r: Room, event: Event, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        check_auth_rules(event, r.state)


# ---------------------------------------------------------------- rule 1: m.room.create


def create_event(
    version: str,
    *,
    sender: str = ALICE,
    content: dict | None = None,
    prev_events: list | None = None,
    room_id: str | None = None,
) -> Event:
    rv = KNOWN_ROOM_VERSIONS[version]
    body: dict[str, Any] = {"room_version": version}
    if not rv.implicit_room_creator:
        body["creator"] = sender
    if content is not None:
        body = content
    event_json: dict[str, Any] = {
        "type": "m.room.create",
        "state_key": "",
        "sender": sender,
        "content": body,
        "auth_events": [],
        "prev_events": prev_events or [],
        "depth": 1,
        "origin_server_ts": 1,
    }
    if room_id is not None:
        event_json["room_id"] = room_id
    elif not rv.room_id_from_create_event:
        event_json["room_id"] = "!room:a.test"
    return Event(event_json, "$" + "c" * 43, rv)


@pytest.mark.parametrize("version", ALL)
def test_create_allowed(version):
    check_auth_rules(create_event(version), {})


@pytest.mark.parametrize("version", ALL)
def test_create_with_prev_events_refused(version):
    with pytest.raises(AuthError, match=r"rule 1\.1"):
        check_auth_rules(create_event(version, prev_events=["$other"]), {})


@pytest.mark.parametrize("version", PRE_HYDRA)
def test_create_room_id_domain_must_match_sender(version):
    with pytest.raises(AuthError, match=r"rule 1\.2"):
        check_auth_rules(create_event(version, room_id="!room:elsewhere.test"), {})


@pytest.mark.parametrize("version", HYDRA)
def test_v12_create_must_not_have_room_id(version):
    with pytest.raises(AuthError, match=r"rule 1\.2"):
        check_auth_rules(create_event(version, room_id="!room:a.test"), {})


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("declared", ["999", 12, ["12"], None])
def test_create_unknown_room_version_refused(version, declared):
    content = {"room_version": declared, "creator": ALICE}
    with pytest.raises(AuthError, match=r"rule 1\.3"):
        check_auth_rules(create_event(version, content=content), {})


@pytest.mark.parametrize("version", ALL)
def test_create_without_room_version_allowed(version):
    check_auth_rules(create_event(version, content={"creator": ALICE}), {})


@pytest.mark.parametrize("version", EXPLICIT_CREATOR)
def test_create_without_creator_refused_before_v11(version):
    with pytest.raises(AuthError, match=r"rule 1\.4"):
        check_auth_rules(create_event(version, content={"room_version": version}), {})


@pytest.mark.parametrize("version", IMPLICIT_CREATOR)
def test_create_without_creator_allowed_from_v11(version):
    check_auth_rules(create_event(version, content={"room_version": version}), {})


@pytest.mark.parametrize("version", HYDRA)
def test_v12_additional_creators_valid(version):
    content = {"room_version": version, "additional_creators": [BOB, "@historical\u00e9:b.test"]}
    check_auth_rules(create_event(version, content=content), {})


@pytest.mark.parametrize(
    "additional",
    [BOB, [BOB, 5], ["bob"], ["@bob"], ["@bob:bad_server!"], [None], {"user": BOB}],
)
@pytest.mark.parametrize("version", HYDRA)
def test_v12_additional_creators_invalid(version, additional):
    content = {"room_version": version, "additional_creators": additional}
    with pytest.raises(AuthError, match=r"rule 1\.4"):
        check_auth_rules(create_event(version, content=content), {})


@pytest.mark.parametrize("version", ["11"])
def test_additional_creators_ignored_before_v12(version):
    content = {"room_version": version, "additional_creators": "not a list"}
    check_auth_rules(create_event(version, content=content), {})


# ------------------------------------------------- rule 2 (v12): room id from the create event


@pytest.mark.parametrize("version", HYDRA)
def test_v12_room_id_must_derive_from_create_event(version):
    r = room(version)
    allow(r, r.event("m.room.message", BOB, {"body": "hi"}))
    wrong = r.event("m.room.message", BOB, {"body": "hi"}, room_id="!" + "x" * 43)
    deny(r, wrong, r"rule 2: room id")


@pytest.mark.parametrize("version", PRE_HYDRA)
def test_pre_v12_room_id_is_not_derived(version):
    r = room(version)
    assert r.room_id != "!" + r.create.event_id[1:]
    allow(r, r.event("m.room.message", BOB, {"body": "hi"}))


@pytest.mark.parametrize("version", ALL)
def test_missing_create_event_in_auth_state_refused(version):
    r = room(version)
    event = r.event("m.room.message", BOB, {"body": "hi"})
    del r.state[CREATE]
    deny(r, event, "no m.room.create")


@pytest.mark.parametrize("version", ALL)
def test_auth_state_from_another_room_refused(version):
    r = room(version)
    other = Room(version, creator=ALICE)
    other.set_member(BOB, "join")
    r.state[("m.room.member", BOB)] = other.state[("m.room.member", BOB)]
    rule = "3.5" if KNOWN_ROOM_VERSIONS[version].room_id_from_create_event else "2.5"
    deny(r, r.event("m.room.message", BOB, {"body": "hi"}), rf"rule {rule}: .* another room")


# --------------------------------------------------------- rules 2 / 3: the auth_events list


def _auth_events(r: Room, event: Event) -> list[Event]:
    keys = auth_types_for_event(r.version, event.type, event.sender, event.state_key, event.content)
    return [r.state[k] for k in keys if k in r.state]


@pytest.mark.parametrize("version", ALL)
def test_auth_events_selected_allowed(version):
    r = room(version)
    event = r.member(CAROL, "join")
    check_auth_events(event, _auth_events(r, event))


@pytest.mark.parametrize("version", ALL)
def test_auth_events_duplicate_refused(version):
    r = room(version)
    event = r.event("m.room.message", BOB, {"body": "hi"})
    old_levels = r.state[POWER_LEVELS]
    new_levels = r.set_state("m.room.power_levels", r.power_levels(ban=40))
    with pytest.raises(AuthError, match=r"\.1: duplicate"):
        check_auth_events(event, _auth_events(r, event) + [old_levels])
    assert new_levels in _auth_events(r, event)


@pytest.mark.parametrize("version", ALL)
def test_auth_events_not_selected_refused(version):
    r = room(version)
    event = r.event("m.room.message", BOB, {"body": "hi"})
    extra = r.state[("m.room.join_rules", "")]
    with pytest.raises(AuthError, match=r"\.2: .*selection"):
        check_auth_events(event, _auth_events(r, event) + [extra])


@pytest.mark.parametrize("version", PRE_HYDRA)
def test_auth_events_without_create_refused(version):
    r = room(version)
    event = r.event("m.room.message", BOB, {"body": "hi"})
    without_create = [e for e in _auth_events(r, event) if e.type != "m.room.create"]
    with pytest.raises(AuthError, match=r"rule 2\.4"):
        check_auth_events(event, without_create)


@pytest.mark.parametrize("version", HYDRA)
def test_v12_auth_events_with_create_refused(version):
    r = room(version)
    event = r.event("m.room.message", BOB, {"body": "hi"})
    assert r.create not in _auth_events(r, event)
    check_auth_events(event, _auth_events(r, event))
    with pytest.raises(AuthError, match=r"rule 3\.2"):
        check_auth_events(event, _auth_events(r, event) + [r.create])


@pytest.mark.parametrize("version", ALL)
def test_auth_events_from_another_room_refused(version):
    r = room(version)
    other = Room(version)
    other.set_member(BOB, "join")
    event = r.event("m.room.message", BOB, {"body": "hi"})
    auth = [e for e in _auth_events(r, event) if e.state_key != BOB]
    auth.append(other.state[("m.room.member", BOB)])
    with pytest.raises(AuthError, match=r"\.5: .*another room"):
        check_auth_events(event, auth)


@pytest.mark.parametrize("version", ALL)
def test_auth_events_of_create_not_checked(version):
    check_auth_events(create_event(version), [])


# --------------------------------------------------------------- auth events selection


@pytest.mark.parametrize("version", ALL)
def test_selection_for_message(version):
    rv = KNOWN_ROOM_VERSIONS[version]
    keys = auth_types_for_event(rv, "m.room.message", BOB, None, {"body": "x"})
    expected = [POWER_LEVELS, ("m.room.member", BOB)]
    if not rv.room_id_from_create_event:
        expected.insert(0, CREATE)
    assert keys == expected


@pytest.mark.parametrize("version", ALL)
def test_selection_for_create_is_empty(version):
    assert auth_types_for_event(KNOWN_ROOM_VERSIONS[version], "m.room.create", ALICE, "", {}) == []


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    ("membership", "with_join_rules"),
    [("join", True), ("invite", True), ("knock", True), ("leave", False), ("ban", False)],
)
def test_selection_for_membership(version, membership, with_join_rules):
    rv = KNOWN_ROOM_VERSIONS[version]
    keys = auth_types_for_event(rv, "m.room.member", ALICE, BOB, {"membership": membership})
    assert ("m.room.member", ALICE) in keys and ("m.room.member", BOB) in keys
    assert (("m.room.join_rules", "") in keys) is with_join_rules
    assert (CREATE in keys) is (not rv.room_id_from_create_event)


@pytest.mark.parametrize("version", ALL)
def test_selection_deduplicates_sender_and_target(version):
    keys = auth_types_for_event(
        KNOWN_ROOM_VERSIONS[version], "m.room.member", BOB, BOB, {"membership": "join"}
    )
    assert keys.count(("m.room.member", BOB)) == 1


@pytest.mark.parametrize("version", ALL)
def test_selection_for_third_party_invite(version):
    content = {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}}
    keys = auth_types_for_event(KNOWN_ROOM_VERSIONS[version], "m.room.member", ALICE, BOB, content)
    assert ("m.room.third_party_invite", "tok") in keys
    malformed = {"membership": "invite", "third_party_invite": {"signed": "tok"}}
    keys = auth_types_for_event(
        KNOWN_ROOM_VERSIONS[version], "m.room.member", ALICE, BOB, malformed
    )
    assert not any(k[0] == "m.room.third_party_invite" for k in keys)


@pytest.mark.parametrize("version", ALL)
def test_selection_for_authorised_join(version):
    rv = KNOWN_ROOM_VERSIONS[version]
    content = {"membership": "join", "join_authorised_via_users_server": MOD}
    keys = auth_types_for_event(rv, "m.room.member", BOB, BOB, content)
    assert (("m.room.member", MOD) in keys) is rv.restricted_join_allowed


# ----------------------------------------------------------------------- rule 3: m.federate


@pytest.mark.parametrize("version", ALL)
def test_unfederated_room_refuses_other_servers(version):
    r = room(version, create_content={"m.federate": False})
    deny(r, r.event("m.room.message", BOB, {"body": "hi"}), "does not federate")
    deny(r, r.member(EVE, "join"), "does not federate")
    allow(r, r.event("m.room.message", MOD, {"body": "hi"}))


@pytest.mark.parametrize("version", ALL)
def test_federated_room_admits_other_servers(version):
    r = room(version, create_content={"m.federate": True})
    allow(r, r.event("m.room.message", BOB, {"body": "hi"}))


# ----------------------------------------------------------- rule 4 (v1-v5): m.room.aliases


@pytest.mark.parametrize("version", ALIASES_SPECIAL)
def test_aliases_special_case(version):
    r = room(version)
    # Allowed whatever the sender's membership and power: only the domain counts.
    allow(r, r.event("m.room.aliases", EVE, {"aliases": ["#x:e.test"]}, "e.test"))
    deny(r, r.event("m.room.aliases", EVE, {"aliases": []}, "a.test"), r"rule 4\.2")
    deny(r, r.event("m.room.aliases", EVE, {"aliases": []}), r"rule 4\.1")


@pytest.mark.parametrize("version", NO_ALIASES_SPECIAL)
def test_aliases_are_ordinary_state_from_v6(version):
    r = room(version)
    deny(r, r.event("m.room.aliases", EVE, {"aliases": []}, "e.test"), "not joined")
    # A joined user with the state level may send one whatever its state_key.
    allow(r, r.event("m.room.aliases", MOD, {"aliases": []}, "b.test"))
    deny(r, r.event("m.room.aliases", BOB, {"aliases": []}, "b.test"), "needs power level 50")


# --------------------------------------------------------------- membership: basic shape


@pytest.mark.parametrize("version", ALL)
def test_member_without_membership_refused(version):
    r = room(version)
    deny(
        r,
        r.event("m.room.member", CAROL, {"displayname": "c"}, CAROL),
        "without state_key or membership",
    )


@pytest.mark.parametrize("version", ALL)
def test_member_without_state_key_refused(version):
    r = room(version)
    deny(
        r,
        r.event("m.room.member", CAROL, {"membership": "join"}),
        "without state_key or membership",
    )


@pytest.mark.parametrize("version", ALL)
def test_unknown_membership_refused(version):
    r = room(version)
    deny(r, r.member(CAROL, "wander"), "unknown membership")


# ----------------------------------------------------------------------- membership: join


@pytest.mark.parametrize("version", ALL)
def test_creator_joins_right_after_create(version):
    r = Room(version)
    allow(r, r.member(ALICE, "join"))
    # Not right after the create event: the ordinary rules apply (no join rules: invite only).
    r.set_state("m.room.topic", {"topic": "x"})
    deny(r, r.member(ALICE, "join"), "not invited")


@pytest.mark.parametrize(
    ("version", "create_id"),
    [("1", "$abc:a.test"), ("3", "$a+b/c" + "d" * 38), ("4", "$a-b_c" + "d" * 38)],
)
def test_creator_join_with_each_event_id_format(version, create_id):
    # The format of event ids (v1-2 origin-chosen, v3 base64, v4+ URL-safe) does not
    # change the rules: only equality with the create event's id counts.
    r = Room(version)
    r.create = Event(r.create.json, create_id, r.version)
    r.state[CREATE] = r.create
    join = {"membership": "join"}
    allow(r, r.event("m.room.member", ALICE, join, ALICE, prev=[create_id]))
    deny(r, r.event("m.room.member", ALICE, join, ALICE, prev=[create_id + "x"]), "not invited")


@pytest.mark.parametrize("version", ALL)
def test_only_the_creator_joins_right_after_create(version):
    r = Room(version)
    deny(r, r.member(BOB, "join"), "not invited")


@pytest.mark.parametrize("version", EXPLICIT_CREATOR)
def test_creator_is_content_creator_before_v11(version):
    r = Room(version, create_content={"creator": BOB})
    allow(r, r.member(BOB, "join"))
    deny(r, r.member(ALICE, "join"), "not invited")


@pytest.mark.parametrize("version", IMPLICIT_CREATOR)
def test_creator_is_sender_from_v11(version):
    r = Room(version, create_content={"creator": BOB})
    allow(r, r.member(ALICE, "join"))
    deny(r, r.member(BOB, "join"), "not invited")


@pytest.mark.parametrize("version", HYDRA)
def test_additional_creator_does_not_use_the_first_join_rule(version):
    r = Room(version, create_content={"additional_creators": [BOB]})
    deny(r, r.member(BOB, "join"), "not invited")


@pytest.mark.parametrize("version", ALL)
def test_join_for_another_user_refused(version):
    r = room(version)
    deny(r, r.member(CAROL, "join", sender=BOB), "cannot join another user")


@pytest.mark.parametrize("version", ALL)
def test_banned_user_cannot_join_public_room(version):
    r = room(version, members={MOD: "join", CAROL: "ban"})
    deny(r, r.member(CAROL, "join"), "banned")
    allow(r, r.member(BOB, "join"))


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("current", ["invite", "join"])
def test_invite_only_room_admits_invited_and_joined(version, current):
    r = room(version, "invite", members={CAROL: current})
    allow(r, r.member(CAROL, "join"))


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("current", [None, "leave"])
def test_invite_only_room_refuses_others(version, current):
    r = room(version, "invite", members={CAROL: current} if current else {})
    deny(r, r.member(CAROL, "join"), "not invited")


@pytest.mark.parametrize("version", ALL)
def test_missing_join_rules_means_invite_only(version):
    r = room(version, None, members={CAROL: "invite"})
    deny(r, r.member(BOB, "join"), "not invited")
    allow(r, r.member(CAROL, "join"))


@pytest.mark.parametrize("version", KNOCK)
def test_knock_room_admits_invited(version):
    r = room(version, "knock", members={CAROL: "invite"})
    allow(r, r.member(CAROL, "join"))
    deny(r, r.member(BOB, "join"), "not invited")


@pytest.mark.parametrize("version", NO_KNOCK)
def test_knock_join_rule_unknown_before_v7(version):
    r = room(version, "knock", members={CAROL: "invite"})
    deny(r, r.member(CAROL, "join"), "does not admit")


@pytest.mark.parametrize("version", ALL)
def test_public_room_admits_anyone(version):
    r = room(version, "public")
    allow(r, r.member(EVE, "join"))


@pytest.mark.parametrize("version", ALL)
def test_private_join_rule_refuses(version):
    r = room(version, "private", members={CAROL: "invite"})
    deny(r, r.member(EVE, "join"), "does not admit")


# ------------------------------------------------------- membership: restricted joins (v8+)


def restricted_join(r: Room, user: str, authoriser: str | None) -> Event:
    extra = {} if authoriser is None else {"join_authorised_via_users_server": authoriser}
    return r.member(user, "join", **extra)


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_join_authorised_by_member_with_invite_power(version):
    r = room(version, "restricted", power_levels={"invite": 50})
    allow(r, restricted_join(r, EVE, MOD))


@pytest.mark.parametrize("version", RESTRICTED)
@pytest.mark.parametrize("current", ["invite", "join"])
def test_restricted_join_of_invited_needs_no_authoriser(version, current):
    r = room(version, "restricted", members={CAROL: current})
    allow(r, restricted_join(r, CAROL, None))


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_join_without_authoriser_refused(version):
    r = room(version, "restricted")
    deny(r, restricted_join(r, EVE, None), "not a joined member")


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_join_authoriser_not_joined_refused(version):
    r = room(version, "restricted", members={MOD: "leave"})
    deny(r, restricted_join(r, EVE, MOD), "not a joined member")


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_join_authoriser_below_invite_level_refused(version):
    r = room(version, "restricted", power_levels={"invite": 60})
    deny(r, restricted_join(r, EVE, MOD), "cannot invite")


@pytest.mark.parametrize("version", RESTRICTED)
def test_restricted_join_of_banned_user_refused(version):
    r = room(version, "restricted", members={MOD: "join", EVE: "ban"})
    deny(r, restricted_join(r, EVE, MOD), "banned")


@pytest.mark.parametrize("version", NO_RESTRICTED)
def test_restricted_join_rule_unknown_before_v8(version):
    r = room(version, "restricted", members={MOD: "join", CAROL: "invite"})
    deny(r, restricted_join(r, EVE, MOD), "does not admit")
    deny(r, restricted_join(r, CAROL, None), "does not admit")


@pytest.mark.parametrize("version", KNOCK_RESTRICTED)
def test_knock_restricted_join(version):
    r = room(version, "knock_restricted", members={MOD: "join", CAROL: "invite"})
    allow(r, restricted_join(r, EVE, MOD))
    allow(r, restricted_join(r, CAROL, None))
    deny(r, restricted_join(r, BOB, None), "not a joined member")


@pytest.mark.parametrize("version", NO_KNOCK_RESTRICTED_BUT_RESTRICTED)
def test_knock_restricted_join_rule_unknown_before_v10(version):
    r = room(version, "knock_restricted", members={MOD: "join", CAROL: "invite"})
    deny(r, restricted_join(r, EVE, MOD), "does not admit")
    deny(r, restricted_join(r, CAROL, None), "does not admit")


# --------------------------------------------------------------------- membership: invite


@pytest.mark.parametrize("version", ALL)
def test_invite_by_joined_member_allowed(version):
    r = room(version)
    allow(r, r.member(CAROL, "invite", sender=BOB))


@pytest.mark.parametrize("version", ALL)
def test_invite_by_non_member_refused(version):
    r = room(version, members={CAROL: "invite"})
    deny(r, r.member(EVE, "invite", sender=CAROL), "sender is not joined")


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("target_membership", ["join", "ban"])
def test_invite_of_joined_or_banned_refused(version, target_membership):
    r = room(version, members={BOB: "join", CAROL: target_membership})
    deny(r, r.member(CAROL, "invite", sender=BOB), "target is joined or banned")


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("target_membership", ["leave", "invite"])
def test_invite_of_departed_or_invited_allowed(version, target_membership):
    r = room(version, members={BOB: "join", CAROL: target_membership})
    allow(r, r.member(CAROL, "invite", sender=BOB))


@pytest.mark.parametrize("version", ALL)
def test_invite_below_invite_level_refused(version):
    r = room(version, power_levels={"invite": 50})
    deny(r, r.member(CAROL, "invite", sender=BOB), "below the invite level")
    allow(r, r.member(CAROL, "invite", sender=MOD))


# ------------------------------------------------------ membership: third-party invites


def tpi_room(version: str) -> tuple[Room, Any]:
    """A room where Bob made an m.room.third_party_invite with token "tok"."""
    key = generate_signing_key("1")
    r = room(version)
    content = {
        "display_name": "c...@example.org",
        "public_key": encode_base64(key.verify_key.encode()),
    }
    r.set_state("m.room.third_party_invite", content, "tok", sender=BOB)
    return r, key


def tpi_invite(
    r: Room, key, *, sender: str = BOB, target: str = CAROL, signed: Any = None, sign: bool = True
) -> Event:
    if signed is None:
        signed = {"mxid": target, "token": "tok"}
        if sign:
            signed = sign_json(signed, "id.example.org", key)
    content = {
        "membership": "invite",
        "third_party_invite": {"display_name": "c", "signed": signed},
    }
    return r.event("m.room.member", sender, content, target)


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_with_public_key_allowed(version):
    r, key = tpi_room(version)
    allow(r, tpi_invite(r, key))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_with_public_keys_list_allowed(version):
    other = generate_signing_key("2")
    key = generate_signing_key("1")
    r = room(version)
    r.set_state(
        "m.room.third_party_invite",
        {
            "public_key": encode_base64(other.verify_key.encode()),
            "public_keys": [
                {"public_key": "not base64!"},
                {"public_key": encode_base64(key.verify_key.encode(), urlsafe=True)},
            ],
        },
        "tok",
        sender=BOB,
    )
    allow(r, tpi_invite(r, key))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_does_not_need_a_joined_sender(version):
    # The spec allows at rule x.x.1.7, before the sender membership check.
    r, key = tpi_room(version)
    r.set_member(BOB, "leave")
    allow(r, tpi_invite(r, key))


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_of_banned_target_refused(version):
    r, key = tpi_room(version)
    r.set_member(CAROL, "ban", sender=ALICE)
    deny(r, tpi_invite(r, key), r"1\.1: target is banned")


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("signed", ["a string", None])
def test_third_party_invite_without_signed_refused(version, signed):
    r, _ = tpi_room(version)
    content = {"membership": "invite", "third_party_invite": {"display_name": "c"}}
    if signed is not None:
        content["third_party_invite"]["signed"] = signed
    deny(r, r.event("m.room.member", BOB, content, CAROL), r"1\.2: ")


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("missing", ["mxid", "token"])
def test_third_party_invite_signed_without_mxid_or_token_refused(version, missing):
    r, key = tpi_room(version)
    signed = {"mxid": CAROL, "token": "tok"}
    del signed[missing]
    deny(r, tpi_invite(r, key, signed=sign_json(signed, "id.example.org", key)), r"1\.3: ")


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_mxid_mismatch_refused(version):
    r, key = tpi_room(version)
    signed = sign_json({"mxid": EVE, "token": "tok"}, "id.example.org", key)
    deny(r, tpi_invite(r, key, signed=signed), r"1\.4: ")


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_unknown_token_refused(version):
    r, key = tpi_room(version)
    signed = sign_json({"mxid": CAROL, "token": "other"}, "id.example.org", key)
    deny(r, tpi_invite(r, key, signed=signed), r"1\.5: ")


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_from_another_sender_refused(version):
    r, key = tpi_room(version)
    deny(r, tpi_invite(r, key, sender=MOD), r"1\.6: ")


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_unsigned_refused(version):
    r, key = tpi_room(version)
    deny(r, tpi_invite(r, key, sign=False), r"1\.8: ")


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_signed_by_other_key_refused(version):
    r, _ = tpi_room(version)
    deny(r, tpi_invite(r, generate_signing_key("1")), r"1\.8: ")


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_tampered_signed_refused(version):
    r, key = tpi_room(version)
    signed = sign_json({"mxid": CAROL, "token": "tok"}, "id.example.org", key)
    signed["extra"] = "added after signing"
    deny(r, tpi_invite(r, key, signed=signed), r"1\.8: ")


# ---------------------------------------------------------------------- membership: leave


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("current", ["join", "invite"])
def test_leave_self_from_join_or_invite_allowed(version, current):
    r = room(version, members={CAROL: current})
    allow(r, r.member(CAROL, "leave"))


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("current", [None, "leave", "ban"])
def test_leave_self_otherwise_refused(version, current):
    r = room(version, members={CAROL: current} if current else {})
    deny(r, r.member(CAROL, "leave"), "not invited or joined")


@pytest.mark.parametrize("version", KNOCK)
def test_leave_self_rescinds_knock(version):
    r = room(version, "knock", members={})
    r.set_member(CAROL, "knock")
    allow(r, r.member(CAROL, "leave"))


@pytest.mark.parametrize("version", NO_KNOCK)
def test_leave_self_from_knock_refused_before_v7(version):
    # A knock membership cannot arise before v7; were it in state, it would not count.
    r = room(version, members={})
    r.set_member(CAROL, "knock")
    deny(r, r.member(CAROL, "leave"), "not invited or joined")


@pytest.mark.parametrize("version", ALL)
def test_kick_by_non_member_refused(version):
    r = room(version, members={BOB: "join"})
    r.set_member(MOD, "leave")
    deny(r, r.member(BOB, "leave", sender=MOD), "sender is not joined")


@pytest.mark.parametrize("version", ALL)
def test_kick_allowed_and_refused_by_level(version):
    r = room(version, members={MOD: "join", BOB: "join", CAROL: "join"})
    allow(r, r.member(BOB, "leave", sender=MOD))
    deny(r, r.member(CAROL, "leave", sender=BOB), "below the kick level")


@pytest.mark.parametrize("version", ALL)
def test_kick_of_equal_level_refused(version):
    r = room(
        version,
        power_levels={"users": {MOD: 50, BOB: 50, **({} if version in HYDRA else {ALICE: 100})}},
    )
    deny(r, r.member(BOB, "leave", sender=MOD), "not below the sender")


@pytest.mark.parametrize("version", ALL)
def test_unban_needs_ban_level(version):
    r = room(
        version,
        power_levels={"kick": 0, "ban": 50},
        members={MOD: "join", BOB: "join", CAROL: "ban"},
    )
    deny(r, r.member(CAROL, "leave", sender=BOB), "below the ban level")
    allow(r, r.member(CAROL, "leave", sender=MOD))


@pytest.mark.parametrize("version", ALL)
def test_unban_also_needs_kick_level(version):
    r = room(version, power_levels={"kick": 75, "ban": 50}, members={MOD: "join", CAROL: "ban"})
    deny(r, r.member(CAROL, "leave", sender=MOD), "below the kick level")


# ------------------------------------------------------------------------ membership: ban


@pytest.mark.parametrize("version", ALL)
def test_ban_by_moderator_allowed(version):
    r = room(version)
    allow(r, r.member(BOB, "ban", sender=MOD))
    allow(r, r.member(EVE, "ban", sender=MOD))  # banning someone never in the room


@pytest.mark.parametrize("version", ALL)
def test_ban_by_non_member_refused(version):
    r = room(version, members={BOB: "join"})
    r.set_member(MOD, "leave")
    deny(r, r.member(BOB, "ban", sender=MOD), "sender is not joined")


@pytest.mark.parametrize("version", ALL)
def test_ban_below_ban_level_refused(version):
    r = room(version)
    deny(r, r.member(CAROL, "ban", sender=BOB), "below the ban level")


@pytest.mark.parametrize("version", ALL)
def test_ban_of_higher_user_refused(version):
    r = room(version)
    deny(r, r.member(ALICE, "ban", sender=MOD), "not below the sender")


# ----------------------------------------------------------------------- membership: knock


@pytest.mark.parametrize("version", KNOCK)
def test_knock_allowed_in_knock_room(version):
    r = room(version, "knock")
    allow(r, r.member(EVE, "knock"))
    r.set_member(CAROL, "leave")
    allow(r, r.member(CAROL, "knock"))


@pytest.mark.parametrize("version", KNOCK)
@pytest.mark.parametrize("join_rule", ["public", "invite", "restricted"])
def test_knock_refused_in_other_rooms(version, join_rule):
    r = room(version, join_rule)
    deny(r, r.member(EVE, "knock"), "does not allow knocking")


@pytest.mark.parametrize("version", KNOCK_RESTRICTED)
def test_knock_allowed_in_knock_restricted_room(version):
    r = room(version, "knock_restricted")
    allow(r, r.member(EVE, "knock"))


@pytest.mark.parametrize(
    "version", versions(lambda v: v.knock_allowed and not v.knock_restricted_allowed)
)
def test_knock_refused_in_knock_restricted_room_before_v10(version):
    r = room(version, "knock_restricted")
    deny(r, r.member(EVE, "knock"), "does not allow knocking")


@pytest.mark.parametrize("version", KNOCK)
def test_knock_for_another_user_refused(version):
    r = room(version, "knock")
    deny(r, r.member(EVE, "knock", sender=BOB), "cannot knock for another user")


@pytest.mark.parametrize("version", KNOCK)
@pytest.mark.parametrize("current", ["ban", "invite", "join"])
def test_knock_by_banned_invited_or_joined_refused(version, current):
    r = room(version, "knock", members={CAROL: current})
    deny(r, r.member(CAROL, "knock"), f"membership is {current}")


@pytest.mark.parametrize("version", NO_KNOCK)
def test_knock_is_an_unknown_membership_before_v7(version):
    r = room(version, "knock")
    deny(r, r.member(EVE, "knock"), "unknown membership")


# ------------------------------------------------------------ rule 5 (v12: 6): sender joined


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("membership", [None, "invite", "leave", "ban", "knock"])
def test_non_member_cannot_send(version, membership):
    r = room(version, members={CAROL: membership} if membership else {})
    deny(r, r.event("m.room.message", CAROL, {"body": "hi"}), "sender is not joined")


@pytest.mark.parametrize("version", ALL)
def test_member_can_send_message(version):
    r = room(version)
    allow(r, r.event("m.room.message", BOB, {"body": "hi"}))


# --------------------------------------------------- rule 6 (v12: 7): m.room.third_party_invite


@pytest.mark.parametrize("version", ALL)
def test_third_party_invite_event_needs_invite_level(version):
    # The event's own required level does not apply: only the invite level does.
    r = room(version, power_levels={"invite": 50, "events": {"m.room.third_party_invite": 100}})
    allow(r, r.event("m.room.third_party_invite", MOD, {"display_name": "x"}, "tok"))
    deny(
        r,
        r.event("m.room.third_party_invite", BOB, {"display_name": "x"}, "tok"),
        "below the invite level",
    )


# ---------------------------------------------------- rule 7 (v12: 8): required power level


@pytest.mark.parametrize("version", ALL)
def test_events_default(version):
    r = room(version, power_levels={"events_default": 50})
    allow(r, r.event("m.room.message", MOD, {"body": "hi"}))
    deny(r, r.event("m.room.message", BOB, {"body": "hi"}), "needs power level 50")


@pytest.mark.parametrize("version", ALL)
def test_state_default(version):
    r = room(version)
    allow(r, r.event("m.room.topic", MOD, {"topic": "t"}, ""))
    deny(r, r.event("m.room.topic", BOB, {"topic": "t"}, ""), "needs power level 50")


@pytest.mark.parametrize("version", ALL)
def test_required_level_boundary(version):
    users = {**room(version).power_levels()["users"], BOB: 49}
    r = room(version, power_levels={"events_default": 50, "users": users})
    allow(r, r.event("m.room.message", MOD, {"body": "hi"}))  # 50 >= 50
    deny(r, r.event("m.room.message", BOB, {"body": "hi"}), "needs power level 50, sender has 49")


@pytest.mark.parametrize("version", ALL)
def test_events_override_defaults(version):
    r = room(version, power_levels={"events": {"m.room.topic": 0, "m.reaction": 60}})
    allow(r, r.event("m.room.topic", BOB, {"topic": "t"}, ""))
    deny(r, r.event("m.reaction", MOD, {}), "needs power level 60")


@pytest.mark.parametrize("version", ALL)
def test_without_power_levels_only_the_creator_sends_state(version):
    r = Room(version)
    r.set_member(ALICE, "join")
    r.set_state("m.room.join_rules", {"join_rule": "public"})
    r.set_member(BOB, "join")
    allow(r, r.event("m.room.topic", ALICE, {"topic": "t"}, ""))
    allow(r, r.event("m.room.message", BOB, {"body": "hi"}))
    deny(r, r.event("m.room.topic", BOB, {"topic": "t"}, ""), "needs power level 50")


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_required_level(version):
    r = room(version, power_levels={"events_default": "40", "users": {MOD: "50"}})
    allow(r, r.event("m.room.message", MOD, {"body": "hi"}))
    deny(r, r.event("m.room.message", BOB, {"body": "hi"}), "needs power level 40")


# -------------------------------------------------------- rule 8 (v12: 9): @-state keys


@pytest.mark.parametrize("version", ALL)
def test_state_key_of_another_user_refused(version):
    r = room(version, power_levels={"state_default": 0})
    allow(r, r.event("m.custom", BOB, {}, BOB))
    allow(r, r.event("m.custom", BOB, {}, "bob"))
    deny(r, r.event("m.custom", BOB, {}, CAROL), "state_key names another user")


# --------------------------------------------------------------- rule 11 (v1, v2): redactions


@pytest.mark.parametrize("version", DOMAIN_EVENT_IDS)
def test_v1_redaction_rule(version):
    r = room(version, power_levels={"redact": 60})  # MOD (50) is below the redact level
    own = r.event("m.room.redaction", MOD, {}, redacts="$9:a.test", event_id="$50:a.test")
    foreign = r.event("m.room.redaction", MOD, {}, redacts="$9:b.test", event_id="$51:a.test")
    by_admin = r.event("m.room.redaction", ALICE, {}, redacts="$9:b.test", event_id="$52:a.test")
    allow(r, own)
    allow(r, by_admin)
    deny(r, foreign, r"rule 11\.3")


@pytest.mark.parametrize("version", HASH_EVENT_IDS)
def test_redaction_is_ordinary_event_from_v3(version):
    r = room(version, power_levels={"redact": 60, "events": {"m.room.redaction": 10}})
    target = "$" + "9" * 43
    body = {"redacts": target} if KNOWN_ROOM_VERSIONS[version].redacts_in_content else {}
    extra = {} if KNOWN_ROOM_VERSIONS[version].redacts_in_content else {"redacts": target}
    allow(r, r.event("m.room.redaction", MOD, body, **extra))
    deny(r, r.event("m.room.redaction", BOB, body, **extra), "needs power level 10")
    # Below the redact level, an id from another server, or none at all: the
    # auth rules let it through; whether to redact is decided later.
    foreign = {"redacts": "$x:b.test"}
    allow(r, r.event("m.room.redaction", MOD, foreign, event_id="$y:a.test", **foreign))
    allow(r, r.event("m.room.redaction", MOD, {}))


# -------------------------------------------------------------- rule numbers in messages


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1", "rule 6:"), ("5", "rule 6:"), ("6", "rule 5:"), ("11", "rule 5:"), ("12", "rule 6:")],
)
def test_sender_joined_rule_number(version, expected):
    r = room(version)
    with pytest.raises(AuthError) as raised:
        check_auth_rules(r.event("m.room.message", EVE, {"body": "hi"}), r.state)
    assert str(raised.value).startswith(expected)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1", "rule 5.2.2:"), ("7", "rule 4.2.2:"), ("8", "rule 4.3.2:"), ("12", "rule 5.3.2:")],
)
def test_join_sub_rule_number(version, expected):
    r = room(version)
    with pytest.raises(AuthError) as raised:
        check_auth_rules(r.member(CAROL, "join", sender=BOB), r.state)
    assert str(raised.value).startswith(expected)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1", "rule 10.7.1:"), ("6", "rule 9.7.1:"), ("10", "rule 9.9.1:"), ("12", "rule 10.10.1:")],
)
def test_power_levels_sub_rule_number(version, expected):
    r = room(version)
    content = r.power_levels(users={**r.power_levels()["users"], CAROL: 60})
    with pytest.raises(AuthError) as raised:
        check_auth_rules(r.event("m.room.power_levels", MOD, content, ""), r.state)
    assert str(raised.value).startswith(expected)


# ------------------------------------------------ rule 10 (v6-v11: 9): m.room.power_levels


def levels_event(r: Room, sender: str, **changes: Any) -> Event:
    """A power levels event: the current content with ``changes`` applied (None deletes)."""
    content = dict(r.state[POWER_LEVELS].content) if POWER_LEVELS in r.state else {}
    for name, value in changes.items():
        if value is None:
            content.pop(name, None)
        else:
            content[name] = value
    return r.event("m.room.power_levels", sender, content, "")


def users_with(r: Room, **extra_by_user: Any) -> dict[str, Any]:
    users = dict(r.state[POWER_LEVELS].content["users"])
    users.update(extra_by_user)
    return users


@pytest.mark.parametrize("version", INT_ONLY)
@pytest.mark.parametrize(
    "name", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
@pytest.mark.parametrize("value", ["50", 50.0, True, None, [50]])
def test_named_levels_must_be_integers_from_v10(version, name, value):
    r = room(version)
    content = r.power_levels(**{name: value})
    deny(r, r.event("m.room.power_levels", ALICE, content, ""), r"\.1: .* is not an integer")


@pytest.mark.parametrize("version", INT_ONLY)
def test_integer_named_levels_allowed_from_v10(version):
    r = room(version)
    allow(r, levels_event(r, ALICE, ban=40, kick=-5, invite=0, users_default=0))


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_named_levels_allowed_before_v10(version):
    r = room(version)
    allow(r, levels_event(r, ALICE, ban="40", kick=" +30 ", invite="0"))


@pytest.mark.parametrize("version", INT_ONLY)
@pytest.mark.parametrize("name", ["events", "notifications"])
@pytest.mark.parametrize(
    "value", [{"m.room.topic": "50"}, {"m.room.topic": True}, ["m.room.topic"], 50]
)
def test_level_maps_must_hold_integers_from_v10(version, name, value):
    r = room(version)
    deny(r, levels_event(r, ALICE, **{name: value}), r"\.2: .* is not an object of integers")


@pytest.mark.parametrize("version", INT_ONLY)
def test_integer_level_maps_allowed_from_v10(version):
    r = room(version)
    allow(r, levels_event(r, ALICE, events={"m.room.topic": 20}, notifications={"room": 20}))


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_level_maps_allowed_before_v10(version):
    r = room(version)
    allow(r, levels_event(r, ALICE, events={"m.room.topic": "20"}, notifications={"room": "20"}))


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    "users", [{"bob": 10}, {"@bob": 10}, {BOB: "ten"}, {BOB: True}, {BOB: None}, [BOB]]
)
def test_users_must_map_user_ids_to_integers(version, users):
    r = room(version)
    deny(r, levels_event(r, ALICE, users=users), "users is not an object of user IDs to integers")


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_user_levels_allowed_before_v10(version):
    r = room(version)
    allow(r, levels_event(r, ALICE, users=users_with(r, **{BOB: "10"})))


@pytest.mark.parametrize("version", INT_ONLY)
def test_stringy_user_levels_refused_from_v10(version):
    r = room(version)
    deny(r, levels_event(r, ALICE, users=users_with(r, **{BOB: "10"})), "users is not an object")


@pytest.mark.parametrize("version", FLOATY)
def test_float_user_levels_allowed_before_v6(version):
    r = room(version)
    allow(r, levels_event(r, ALICE, users=users_with(r, **{BOB: 10.7})))


@pytest.mark.parametrize("version", versions(lambda v: v.strict_canonicaljson))
def test_float_user_levels_refused_from_v6(version):
    r = room(version)
    deny(r, levels_event(r, ALICE, users=users_with(r, **{BOB: 10.7})), "users is not an object")


@pytest.mark.parametrize("version", HYDRA)
@pytest.mark.parametrize("listed", [ALICE, BOB])
def test_v12_creators_cannot_be_listed_in_users(version, listed):
    r = room(version, create_content={"additional_creators": [BOB]})
    deny(r, levels_event(r, ALICE, users=users_with(r, **{listed: 100})), r"rule 10\.4: .*creators")
    allow(r, levels_event(r, ALICE, users=users_with(r, **{CAROL: 100})))


@pytest.mark.parametrize("version", ["11"])
def test_creator_may_be_listed_in_users_before_v12(version):
    r = room(version)
    allow(r, levels_event(r, ALICE, users=users_with(r, **{ALICE: 100})))


@pytest.mark.parametrize("version", ALL)
def test_first_power_levels_event_allowed(version):
    r = Room(version)
    r.set_member(ALICE, "join")
    content = {"users": {BOB: 1000} if version in HYDRA else {ALICE: 100, BOB: 1000}, "ban": 5000}
    allow(r, r.event("m.room.power_levels", ALICE, content, ""))


@pytest.mark.parametrize("version", ALL)
def test_first_power_levels_event_still_needs_state_level(version):
    r = Room(version)
    r.set_member(ALICE, "join")
    r.set_state("m.room.join_rules", {"join_rule": "public"})
    r.set_member(BOB, "join")
    deny(r, r.event("m.room.power_levels", BOB, {"users": {BOB: 100}}, ""), "needs power level 50")


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    "name", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
def test_named_level_changes(version, name):
    # Sending power levels needs 50 whatever state_default says.
    pl_level = {"events": {"m.room.power_levels": 50}}
    r = room(version, power_levels={name: 40, **pl_level})
    allow(r, levels_event(r, MOD, **{name: 50}))  # up to the sender's own level
    allow(r, levels_event(r, MOD, **{name: None}))  # removed, current 40 <= 50
    deny(r, levels_event(r, MOD, **{name: 51}), r"\.2: new .* above")
    r.set_state("m.room.power_levels", r.power_levels(**{name: 60, **pl_level}))
    deny(r, levels_event(r, MOD, **{name: 10}), r"\.1: current .* above")
    deny(r, levels_event(r, MOD, **{name: None}), r"\.1: current .* above")
    allow(r, levels_event(r, MOD, ban=10 if name != "ban" else 60))  # unchanged 60 is fine


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_value_rewritten_as_integer_is_no_change(version):
    r = room(version, power_levels={"ban": "100"})
    allow(r, levels_event(r, MOD, ban=100))


@pytest.mark.parametrize("version", ALL)
def test_events_entry_changes(version):
    r = room(version, power_levels={"events": {"m.room.name": 40, "m.room.tombstone": 100}})
    allow(r, levels_event(r, MOD, events={"m.room.name": 50, "m.room.tombstone": 100}))
    allow(r, levels_event(r, MOD, events={"m.room.tombstone": 100, "m.room.topic": 50}))
    deny(
        r,
        levels_event(r, MOD, events={"m.room.name": 60, "m.room.tombstone": 100}),
        r"\.1: new events",
    )
    deny(
        r,
        levels_event(r, MOD, events={"m.room.name": 40, "m.room.tombstone": 50}),
        r"\.1: current events",
    )
    deny(r, levels_event(r, MOD, events={"m.room.name": 40}), r"\.1: current events")


@pytest.mark.parametrize("version", NOTIFICATIONS)
def test_notifications_entry_changes_from_v6(version):
    r = room(version, power_levels={"notifications": {"room": 40}})
    allow(r, levels_event(r, MOD, notifications={"room": 50}))
    deny(r, levels_event(r, MOD, notifications={"room": 60}), r"\.1: new notifications")
    r.set_state("m.room.power_levels", r.power_levels(notifications={"room": 60}))
    deny(r, levels_event(r, MOD, notifications={"room": 0}), r"\.1: current notifications")


@pytest.mark.parametrize("version", NO_NOTIFICATIONS)
def test_notifications_unchecked_before_v6(version):
    r = room(version, power_levels={"notifications": {"room": 60}})
    allow(r, levels_event(r, MOD, notifications={"room": 0}))
    allow(r, levels_event(r, MOD, notifications={"room": 90}))


@pytest.mark.parametrize("version", ALL)
def test_users_entry_changes(version):
    r = room(
        version,
        power_levels={"users": {**room(version).power_levels()["users"], BOB: 10, CAROL: 50}},
    )
    allow(r, levels_event(r, MOD, users=users_with(r, **{BOB: 50})))  # raise up to own level
    allow(r, levels_event(r, MOD, users=users_with(r, **{EVE: 50})))  # add at own level
    allow(r, levels_event(r, MOD, users={k: v for k, v in users_with(r).items() if k != BOB}))
    deny(r, levels_event(r, MOD, users=users_with(r, **{BOB: 51})), r"\.1: cannot give")
    deny(r, levels_event(r, MOD, users=users_with(r, **{EVE: 51})), r"\.1: cannot give")
    # CAROL has the sender's level: neither changed nor removed.
    deny(r, levels_event(r, MOD, users=users_with(r, **{CAROL: 0})), r"\.1: cannot change")
    deny(
        r,
        levels_event(r, MOD, users={k: v for k, v in users_with(r).items() if k != CAROL}),
        r"\.1: cannot change",
    )


@pytest.mark.parametrize("version", ALL)
def test_users_may_lower_their_own_level(version):
    r = room(version)
    allow(r, levels_event(r, MOD, users=users_with(r, **{MOD: 10})))
    allow(r, levels_event(r, MOD, users={k: v for k, v in users_with(r).items() if k != MOD}))
    deny(r, levels_event(r, MOD, users=users_with(r, **{MOD: 60})), r"\.1: cannot give")


@pytest.mark.parametrize("version", PRE_HYDRA)
def test_creator_with_level_100_is_bounded(version):
    r = room(version)
    deny(r, levels_event(r, ALICE, ban=200), r"\.2: new ban")


@pytest.mark.parametrize("version", HYDRA)
def test_v12_creators_have_infinite_power(version):
    r = room(
        version,
        create_content={"additional_creators": [CAROL]},
        members={MOD: "join", BOB: "join", CAROL: "join"},
    )
    allow(r, levels_event(r, ALICE, ban=2**53 - 1, users=users_with(r, **{BOB: 2**53 - 1})))
    allow(r, levels_event(r, CAROL, state_default=2**53 - 1))
    # Another creator is not below a creator: neither can kick or ban the other.
    deny(r, r.member(CAROL, "ban", sender=ALICE), "not below the sender")
    r.set_state("m.room.power_levels", r.power_levels(users={MOD: 50, BOB: 2**53 - 1}))
    allow(r, r.member(BOB, "ban", sender=ALICE))
    deny(r, r.member(ALICE, "ban", sender=BOB), "not below the sender")
