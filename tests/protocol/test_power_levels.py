"""Power level and creator helpers: what the auth rules (and the rest of the server) read.

Spec: https://spec.matrix.org/v1.19/client-server-api/#mroompower_levels
and https://spec.matrix.org/v1.19/rooms/v12/ (creators have infinite power).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from homeserver.protocol.auth_rules import (
    get_named_level,
    get_required_level,
    get_user_power_level,
    room_creators,
)
from homeserver.protocol.events import Event
from homeserver.protocol.power_levels import parse_level
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

ALL = list(KNOWN_ROOM_VERSIONS)
PRE_HYDRA = [v for v in ALL if not KNOWN_ROOM_VERSIONS[v].privileged_creators]
HYDRA = [v for v in ALL if KNOWN_ROOM_VERSIONS[v].privileged_creators]
EXPLICIT_CREATOR = [v for v in ALL if not KNOWN_ROOM_VERSIONS[v].implicit_room_creator]
STRINGY = [v for v in ALL if not KNOWN_ROOM_VERSIONS[v].enforce_int_power_levels]
INT_ONLY = [v for v in ALL if KNOWN_ROOM_VERSIONS[v].enforce_int_power_levels]

ALICE, BOB, CAROL = "@alice:a.test", "@bob:b.test", "@carol:c.test"


def state(
    version: str,
    create_content: dict[str, Any] | None = None,
    power_levels: dict[str, Any] | None = None,
    creator: str = ALICE,
):
    rv = KNOWN_ROOM_VERSIONS[version]
    content: dict[str, Any] = {"room_version": version}
    if not rv.implicit_room_creator:
        content["creator"] = creator
    content.update(create_content or {})
    create_json = {"type": "m.room.create", "state_key": "", "sender": creator, "content": content}
    result = {("m.room.create", ""): Event(create_json, "$create", rv)}
    if power_levels is not None:
        pl_json = {
            "type": "m.room.power_levels",
            "state_key": "",
            "sender": creator,
            "content": power_levels,
        }
        result[("m.room.power_levels", "")] = Event(pl_json, "$pl", rv)
    return result


# ------------------------------------------------------------------------- room_creators


@pytest.mark.parametrize("version", EXPLICIT_CREATOR)
def test_creator_is_content_creator_before_v11(version):
    assert room_creators(state(version, {"creator": BOB})) == {BOB}


@pytest.mark.parametrize("version", ["11"])
def test_creator_is_sender_in_v11(version):
    assert room_creators(state(version, {"creator": BOB, "additional_creators": [CAROL]})) == {
        ALICE
    }


@pytest.mark.parametrize("version", HYDRA)
def test_creators_include_additional_creators_in_v12(version):
    assert room_creators(state(version, {"additional_creators": [BOB, CAROL]})) == {
        ALICE,
        BOB,
        CAROL,
    }


def test_no_create_event_no_creators():
    assert room_creators({}) == set()


# ------------------------------------------------------------------ get_user_power_level


@pytest.mark.parametrize("version", PRE_HYDRA)
def test_without_power_levels_creator_has_100(version):
    s = state(version)
    assert get_user_power_level(ALICE, s) == 100
    assert get_user_power_level(BOB, s) == 0


@pytest.mark.parametrize("version", HYDRA)
def test_v12_creators_are_infinite(version):
    s = state(version, {"additional_creators": [BOB]})
    assert get_user_power_level(ALICE, s) == math.inf
    assert get_user_power_level(BOB, s) == math.inf
    assert get_user_power_level(CAROL, s) == 0
    # Even where a power levels event says otherwise.
    s = state(
        version,
        {"additional_creators": [BOB]},
        {"users": {ALICE: 0, BOB: 0, CAROL: 7}, "users_default": 3},
    )
    assert get_user_power_level(ALICE, s) == math.inf
    assert get_user_power_level(BOB, s) == math.inf
    assert get_user_power_level(CAROL, s) == 7


@pytest.mark.parametrize("version", PRE_HYDRA)
def test_power_levels_event_replaces_creator_default(version):
    s = state(version, power_levels={"users": {BOB: 75}, "users_default": 5})
    assert get_user_power_level(ALICE, s) == 5
    assert get_user_power_level(BOB, s) == 75


@pytest.mark.parametrize("version", ALL)
def test_users_default_defaults_to_zero(version):
    assert get_user_power_level(CAROL, state(version, power_levels={"users": {BOB: 75}})) == 0


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_user_level_before_v10(version):
    s = state(version, power_levels={"users": {BOB: " +075 "}, "users_default": "-3"})
    assert get_user_power_level(BOB, s) == 75
    assert get_user_power_level(CAROL, s) == -3


@pytest.mark.parametrize("version", INT_ONLY)
def test_stringy_user_level_ignored_from_v10(version):
    s = state(version, power_levels={"users": {BOB: "75"}, "users_default": 4})
    assert get_user_power_level(BOB, s) == 4


def test_no_state_no_power():
    assert get_user_power_level(ALICE, {}) == 0


# -------------------------------------------------------------------- get_required_level


@pytest.mark.parametrize("version", ALL)
def test_required_level_defaults(version):
    for s in (state(version), state(version, power_levels={})):
        assert get_required_level(s, "m.room.topic", True) == 50
        assert get_required_level(s, "m.room.message", False) == 0


@pytest.mark.parametrize("version", ALL)
def test_required_level_from_power_levels(version):
    s = state(
        version,
        power_levels={
            "events": {"m.room.topic": 10, "m.reaction": 20},
            "state_default": 40,
            "events_default": 30,
        },
    )
    assert get_required_level(s, "m.room.topic", True) == 10
    assert get_required_level(s, "m.reaction", False) == 20
    assert get_required_level(s, "m.room.name", True) == 40
    assert get_required_level(s, "m.room.message", False) == 30


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_required_level_before_v10(version):
    s = state(version, power_levels={"events": {"m.room.topic": "10"}, "state_default": "40"})
    assert get_required_level(s, "m.room.topic", True) == 10
    assert get_required_level(s, "m.room.name", True) == 40


# ----------------------------------------------------------------------- get_named_level


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    ("name", "expected"), [("invite", 0), ("kick", 50), ("ban", 50), ("redact", 50)]
)
def test_named_level_spec_defaults(version, name, expected):
    assert get_named_level(state(version), name) == expected
    assert get_named_level(state(version, power_levels={}), name) == expected


@pytest.mark.parametrize("version", ALL)
def test_named_level_given_default_and_value(version):
    assert get_named_level(state(version), "kick", 7) == 7
    assert get_named_level(state(version, power_levels={"kick": 20}), "kick", 7) == 20


# ---------------------------------------------------------------------------- parse_level


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", 100),
        ("000100", 100),
        ("+100", 100),
        ("-100", -100),
        (" 100 ", 100),
        ("\t-05\n", -5),
        ("1.5", None),
        ("1e3", None),
        ("", None),
        ("+-1", None),
        ("١٢", None),
        (True, None),
        (None, None),
        ([1], None),
        (12, 12),
    ],
)
def test_parse_level_stringy_versions(value, expected):
    assert parse_level(value, KNOWN_ROOM_VERSIONS["9"]) == expected


def test_parse_level_floats_only_without_canonical_json():
    assert parse_level(51146.98, KNOWN_ROOM_VERSIONS["5"]) == 51146
    assert parse_level(-2.5, KNOWN_ROOM_VERSIONS["1"]) == -2
    assert parse_level(float("inf"), KNOWN_ROOM_VERSIONS["1"]) is None
    assert parse_level(float("nan"), KNOWN_ROOM_VERSIONS["1"]) is None
    assert parse_level(50.0, KNOWN_ROOM_VERSIONS["6"]) is None


def test_parse_level_integers_only_from_v10():
    assert parse_level("100", KNOWN_ROOM_VERSIONS["10"]) is None
    assert parse_level(100, KNOWN_ROOM_VERSIONS["12"]) == 100
