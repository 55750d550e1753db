"""Event and sync filters: parsing, validation and matching.

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering
"""

import pytest

from homeserver.protocol.events import Event
from homeserver.protocol.filters import (
    EventFilter,
    FilterError,
    SyncFilter,
    parse_event_filter,
    parse_sync_filter,
)
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

ROOM = "!room:example.com"
OTHER_ROOM = "!other:example.com"


def event(event_type: str = "m.room.message", sender: str = "@alice:example.com", room_id: str = ROOM,
          content: dict | None = None) -> Event:
    return Event({
        "type": event_type, "sender": sender, "room_id": room_id, "content": content or {},
        "origin_server_ts": 1, "depth": 1, "prev_events": [], "auth_events": [],
    }, "$e", KNOWN_ROOM_VERSIONS["10"])


# Parsing


def test_empty_filter_has_spec_defaults():
    parsed = parse_sync_filter({})
    assert parsed == SyncFilter()
    assert parsed.room.include_leave is False
    assert parsed.room.timeline.limit is None
    assert parsed.room.timeline.lazy_load_members is False
    assert parsed.event_format == "client"


def test_full_filter_is_parsed():
    parsed = parse_sync_filter({
        "event_fields": ["type", "content.body"],
        "event_format": "federation",
        "account_data": {"types": ["m.push_rules"]},
        "presence": {"not_senders": ["@bad:example.com"]},
        "room": {
            "rooms": [ROOM],
            "not_rooms": [OTHER_ROOM],
            "include_leave": True,
            "timeline": {"limit": 5, "types": ["m.room.*"], "not_types": ["m.room.member"],
                         "senders": ["@alice:example.com"], "not_senders": ["@bob:example.com"],
                         "contains_url": True},
            "state": {"lazy_load_members": True, "include_redundant_members": True},
            "ephemeral": {"types": ["m.typing"]},
            "account_data": {"not_types": ["m.fully_read"]},
        },
    })
    assert parsed.event_fields == ("type", "content.body")
    assert parsed.event_format == "federation"
    assert parsed.account_data.types == ("m.push_rules",)
    assert parsed.presence.not_senders == ("@bad:example.com",)
    room = parsed.room
    assert room.rooms == (ROOM,) and room.not_rooms == (OTHER_ROOM,) and room.include_leave
    assert room.timeline.limit == 5
    assert room.timeline.types == ("m.room.*",)
    assert room.timeline.not_types == ("m.room.member",)
    assert room.timeline.senders == ("@alice:example.com",)
    assert room.timeline.not_senders == ("@bob:example.com",)
    assert room.timeline.contains_url is True
    assert room.state.lazy_load_members and room.state.include_redundant_members
    assert room.ephemeral.types == ("m.typing",)
    assert room.account_data.not_types == ("m.fully_read",)


@pytest.mark.parametrize("raw", [
    [],
    "filter",
    {"room": []},
    {"room": {"timeline": []}},
    {"room": {"timeline": {"limit": "10"}}},
    {"room": {"timeline": {"limit": 0}}},
    {"room": {"timeline": {"limit": -3}}},
    {"room": {"timeline": {"limit": 1.5}}},
    {"room": {"timeline": {"limit": True}}},
    {"room": {"timeline": {"types": "m.room.message"}}},
    {"room": {"timeline": {"types": [1]}}},
    {"room": {"state": {"lazy_load_members": "yes"}}},
    {"room": {"rooms": "!room:example.com"}},
    {"room": {"include_leave": 1}},
    {"room": {"timeline": {"contains_url": "true"}}},
    {"account_data": {"not_types": [None]}},
    {"presence": 3},
    {"event_format": "raw"},
    {"event_fields": "content"},
])
def test_invalid_filters_are_rejected(raw):
    with pytest.raises(FilterError):
        parse_sync_filter(raw)


def test_event_filter_rejects_non_object():
    with pytest.raises(FilterError):
        parse_event_filter(["types"])


def test_error_names_the_bad_key():
    with pytest.raises(FilterError, match=r"room\.timeline\.limit"):
        parse_sync_filter({"room": {"timeline": {"limit": "x"}}})


def test_null_values_mean_absent():
    parsed = parse_event_filter({"types": None, "limit": None, "contains_url": None})
    assert parsed == EventFilter()


# Matching


def test_empty_filter_allows_everything():
    assert EventFilter().allows(event())
    assert EventFilter().allows(event("com.example.custom", "@x:y", OTHER_ROOM))


def test_types_and_wildcards():
    f = parse_event_filter({"types": ["m.room.*", "com.example.exact"]})
    assert f.allows(event("m.room.message"))
    assert f.allows(event("m.room.member"))
    assert f.allows(event("com.example.exact"))
    assert not f.allows(event("com.example.exactly"))
    assert not f.allows(event("m.roomy"))
    assert not f.allows(event("m.call.invite"))


def test_wildcard_matches_any_sequence_including_empty():
    f = parse_event_filter({"types": ["m.*.invite"]})
    assert f.allows(event("m.call.invite"))
    assert f.allows(event("m..invite"))
    assert not f.allows(event("m.call.answer"))
    assert parse_event_filter({"types": ["*"]}).allows(event("anything.at.all"))


@pytest.mark.parametrize("pattern, event_type", [
    ("m.?oom*", "m.room.message"),
    ("[m].room*", "m.room.message"),
    ("m.room.[a-z]*", "m.room.message"),
])
def test_only_star_is_a_wildcard(pattern, event_type):
    # The spec names '*' as the one wildcard; '?' and '[' are plain characters.
    assert not parse_event_filter({"types": [pattern]}).allows(event(event_type))
    assert parse_event_filter({"types": [pattern]}).allows(event(pattern.replace("*", "x")))


def test_not_types_win_over_types():
    f = parse_event_filter({"types": ["m.room.*"], "not_types": ["m.room.member"]})
    assert f.allows(event("m.room.message"))
    assert not f.allows(event("m.room.member"))
    g = parse_event_filter({"not_types": ["m.room.*"]})
    assert not g.allows(event("m.room.name"))
    assert g.allows(event("m.reaction"))


def test_senders_and_not_senders():
    f = parse_event_filter({"senders": ["@alice:example.com", "@bob:example.com"],
                            "not_senders": ["@bob:example.com"]})
    assert f.allows(event(sender="@alice:example.com"))
    assert not f.allows(event(sender="@bob:example.com"))
    assert not f.allows(event(sender="@carol:example.com"))
    assert not parse_event_filter({"senders": []}).allows(event())


def test_rooms_and_not_rooms():
    f = parse_event_filter({"rooms": [ROOM, OTHER_ROOM], "not_rooms": [OTHER_ROOM]})
    assert f.allows(event(room_id=ROOM))
    assert not f.allows(event(room_id=OTHER_ROOM))
    assert not f.allows(event(room_id="!third:example.com"))
    assert f.allows_room(ROOM) and not f.allows_room(OTHER_ROOM)


def test_room_filter_rooms():
    room_filter = parse_sync_filter({"room": {"rooms": [ROOM, OTHER_ROOM], "not_rooms": [OTHER_ROOM]}}).room
    assert room_filter.allows_room(ROOM)
    assert not room_filter.allows_room(OTHER_ROOM)
    assert not room_filter.allows_room("!third:example.com")
    assert parse_sync_filter({}).room.allows_room("!any:example.com")


def test_contains_url():
    with_url = event(content={"url": "mxc://example.com/abc", "msgtype": "m.image"})
    without = event(content={"body": "hi"})
    bad_url = event(content={"url": 5})
    yes = parse_event_filter({"contains_url": True})
    no = parse_event_filter({"contains_url": False})
    assert yes.allows(with_url) and not yes.allows(without) and not yes.allows(bad_url)
    assert no.allows(without) and not no.allows(with_url)


def test_allows_type_for_account_data():
    f = parse_event_filter({"types": ["m.*"], "not_types": ["m.secret"]})
    assert f.allows_type("m.push_rules")
    assert not f.allows_type("m.secret")
    assert not f.allows_type("com.example.x")
