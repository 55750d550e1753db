"""The redaction algorithm, one family of room versions at a time."""

import copy

import pytest

from homeserver.protocol.redaction import redact_event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS
ALL = [str(v) for v in range(1, 13)]
BEFORE_V11 = [str(v) for v in range(1, 11)]
FROM_V11 = ["11", "12"]

ESSENTIAL_TOP_LEVEL = {
    "event_id": "$ev:example.com",
    "type": "m.room.message",
    "room_id": "!room:example.com",
    "sender": "@alice:example.com",
    "content": {},
    "hashes": {"sha256": "abc"},
    "signatures": {"example.com": {"ed25519:1": "sig"}},
    "depth": 5,
    "prev_events": ["$prev"],
    "auth_events": ["$auth"],
    "origin_server_ts": 1234,
}
OLD_TOP_LEVEL = {"origin": "example.com", "membership": "join", "prev_state": []}
DROPPED_TOP_LEVEL = {
    "unsigned": {"age": 1, "redacted_because": {}},
    "redacts": "$other",
    "age_ts": 5,
    "outlier": True,
    "custom": {"x": 1},
}


def event(event_type, content, **extra):
    return {
        **ESSENTIAL_TOP_LEVEL,
        **OLD_TOP_LEVEL,
        **DROPPED_TOP_LEVEL,
        "type": event_type,
        "state_key": "",
        "content": content,
        **extra,
    }


def content_after(version, event_type, content):
    return redact_event(event(event_type, content), V[version])["content"]


@pytest.mark.parametrize("version", BEFORE_V11)
def test_top_level_keys_before_v11(version):
    redacted = redact_event(event("m.room.message", {"body": "hi"}), V[version])
    assert redacted == {
        **ESSENTIAL_TOP_LEVEL,
        **OLD_TOP_LEVEL,
        "type": "m.room.message",
        "state_key": "",
        "content": {},
    }


@pytest.mark.parametrize("version", FROM_V11)
def test_top_level_keys_from_v11(version):
    redacted = redact_event(event("m.room.message", {"body": "hi"}), V[version])
    assert redacted == {
        **ESSENTIAL_TOP_LEVEL,
        "type": "m.room.message",
        "state_key": "",
        "content": {},
    }


def test_redaction_returns_a_new_dict_and_leaves_the_event_alone():
    original = event("m.room.power_levels", {"users": {"@a:b.c": 100}, "foo": 1})
    before = copy.deepcopy(original)
    redacted = redact_event(original, V["10"])
    assert original == before
    redacted["content"]["users"]["@a:b.c"] = 0
    redacted["prev_events"].append("$x")
    assert original == before


@pytest.mark.parametrize("version", ALL)
def test_message_content_is_emptied_and_missing_content_becomes_empty(version):
    assert content_after(version, "m.room.message", {"body": "secret"}) == {}
    no_content = {k: v for k, v in event("m.room.message", {}).items() if k != "content"}
    assert redact_event(no_content, V[version])["content"] == {}
    assert redact_event(event("m.room.member", "not an object"), V[version])["content"] == {}


MEMBER = {
    "membership": "join",
    "displayname": "Alice",
    "avatar_url": "mxc://a/b",
    "join_authorised_via_users_server": "@bob:example.com",
    "third_party_invite": {
        "display_name": "alice@example.com",
        "signed": {"mxid": "@a:b.c", "token": "t"},
    },
}


@pytest.mark.parametrize("version", ["1", "5", "6", "7", "8"])
def test_member_before_v9_keeps_only_membership(version):
    assert content_after(version, "m.room.member", MEMBER) == {"membership": "join"}


@pytest.mark.parametrize("version", ["9", "10"])
def test_member_v9_keeps_authorising_user(version):
    assert content_after(version, "m.room.member", MEMBER) == {
        "membership": "join",
        "join_authorised_via_users_server": "@bob:example.com",
    }


@pytest.mark.parametrize("version", FROM_V11)
def test_member_v11_keeps_third_party_invite_signed(version):
    assert content_after(version, "m.room.member", MEMBER) == {
        "membership": "join",
        "join_authorised_via_users_server": "@bob:example.com",
        "third_party_invite": {"signed": {"mxid": "@a:b.c", "token": "t"}},
    }
    without_signed = {**MEMBER, "third_party_invite": {"display_name": "x"}}
    assert content_after(version, "m.room.member", without_signed)["third_party_invite"] == {}
    not_an_object = {**MEMBER, "third_party_invite": "junk"}
    assert "third_party_invite" not in content_after(version, "m.room.member", not_an_object)


CREATE = {
    "creator": "@alice:example.com",
    "room_version": "5",
    "m.federate": False,
    "predecessor": {"room_id": "!old:x.y"},
}


@pytest.mark.parametrize("version", BEFORE_V11)
def test_create_before_v11_keeps_creator(version):
    assert content_after(version, "m.room.create", CREATE) == {"creator": "@alice:example.com"}


@pytest.mark.parametrize("version", FROM_V11)
def test_create_from_v11_keeps_all_content(version):
    content = {"room_version": version, "additional_creators": ["@b:x.y"], "type": "m.space"}
    assert content_after(version, "m.room.create", content) == content
    assert content_after(version, "m.room.create", CREATE) == CREATE


JOIN_RULES = {
    "join_rule": "restricted",
    "allow": [{"type": "m.room_membership", "room_id": "!space:x.y"}],
    "other": 1,
}


@pytest.mark.parametrize("version", ["1", "4", "6", "7"])
def test_join_rules_before_v8_keep_join_rule(version):
    assert content_after(version, "m.room.join_rules", JOIN_RULES) == {"join_rule": "restricted"}


@pytest.mark.parametrize("version", ["8", "9", "10", "11", "12"])
def test_join_rules_from_v8_keep_allow(version):
    assert content_after(version, "m.room.join_rules", JOIN_RULES) == {
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership", "room_id": "!space:x.y"}],
    }


POWER_LEVELS = {
    "ban": 50,
    "events": {"m.room.name": 100},
    "events_default": 0,
    "invite": 50,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {"@alice:example.com": 100},
    "users_default": 0,
    "notifications": {"room": 50},
}
POWER_LEVELS_KEPT_BEFORE_V11 = {
    k: v for k, v in POWER_LEVELS.items() if k not in ("invite", "notifications")
}


@pytest.mark.parametrize("version", BEFORE_V11)
def test_power_levels_before_v11(version):
    kept = content_after(version, "m.room.power_levels", POWER_LEVELS)
    assert kept == POWER_LEVELS_KEPT_BEFORE_V11


@pytest.mark.parametrize("version", FROM_V11)
def test_power_levels_from_v11_keep_invite(version):
    assert content_after(version, "m.room.power_levels", POWER_LEVELS) == {
        **POWER_LEVELS_KEPT_BEFORE_V11,
        "invite": 50,
    }


@pytest.mark.parametrize("version", ALL)
def test_history_visibility(version):
    content = {"history_visibility": "shared", "extra": True}
    assert content_after(version, "m.room.history_visibility", content) == {
        "history_visibility": "shared"
    }


@pytest.mark.parametrize("version", ["1", "2", "3", "4", "5"])
def test_aliases_kept_up_to_v5(version):
    content = {"aliases": ["#a:example.com"], "extra": 1}
    assert content_after(version, "m.room.aliases", content) == {"aliases": ["#a:example.com"]}


@pytest.mark.parametrize("version", ["6", "7", "8", "9", "10", "11", "12"])
def test_aliases_not_kept_from_v6(version):
    assert content_after(version, "m.room.aliases", {"aliases": ["#a:example.com"]}) == {}


@pytest.mark.parametrize("version", BEFORE_V11)
def test_redaction_event_before_v11_loses_redacts(version):
    redaction = event("m.room.redaction", {"redacts": "$target", "reason": "spam"})
    redacted = redact_event(redaction, V[version])
    assert redacted["content"] == {}
    # The top-level "redacts" was never protected.
    assert "redacts" not in redacted


@pytest.mark.parametrize("version", FROM_V11)
def test_redaction_event_from_v11_keeps_content_redacts(version):
    redaction = event("m.room.redaction", {"redacts": "$target", "reason": "spam"})
    redacted = redact_event(redaction, V[version])
    assert redacted["content"] == {"redacts": "$target"}
    assert "redacts" not in redacted


@pytest.mark.parametrize("version", ALL)
def test_unlisted_state_events_lose_their_content(version):
    assert content_after(version, "m.room.name", {"name": "Secret"}) == {}
    assert content_after(version, "m.room.topic", {"topic": "Secret"}) == {}
    assert content_after(version, "m.room.third_party_invite", {"public_key": "k"}) == {}


@pytest.mark.parametrize("version", ALL)
def test_redaction_is_idempotent(version):
    for event_type, content in (
        ("m.room.member", MEMBER),
        ("m.room.create", CREATE),
        ("m.room.power_levels", POWER_LEVELS),
        ("m.room.join_rules", JOIN_RULES),
    ):
        once = redact_event(event(event_type, content), V[version])
        assert redact_event(once, V[version]) == once
