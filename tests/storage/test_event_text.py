"""Stored event text parsed by room version (homeserver/storage/events.py parse_event_text)."""

from __future__ import annotations

import json

from homeserver.protocol.canonical import event_json_text
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.events import parse_event_text, parse_internal_text


def test_strict_room_versions_parse_as_the_standard_library_does():
    event = {"type": "m.room.message", "content": {"body": "héllo 😀 \"q\" \\", "n": 2**53 - 1, "m": -(2**53) + 1,
                                                   "list": [True, None, {}]}, "depth": 12}
    text = event_json_text(event)
    for version in ("6", "10", "11", "12"):
        assert parse_event_text(text, KNOWN_ROOM_VERSIONS[version]) == json.loads(text) == event


def test_older_room_versions_keep_floats_and_large_integers_exactly():
    # Allowed before v6, and covered by the event's hashes: a float parsed into another
    # float, or a large integer into a float, would change the hash of what we serve.
    event = {"type": "m.room.message", "content": {"pi": 3.141592653589793, "big": 2**70, "neg": -(2**65)}}
    text = event_json_text(event)
    parsed = parse_event_text(text, KNOWN_ROOM_VERSIONS["5"])
    assert parsed == event
    assert type(parsed["content"]["big"]) is int and event_json_text(parsed) == text


def test_internal_text_parses_as_the_standard_library_does():
    cases = [
        {"txn": ["DEVICE", "t1"]},
        {"invite_room_state": [{"type": "m.room.name", "content": {"name": "é 😀", "n": 2**63 - 1}}]},
        # Beyond 64 bits, orjson would read these as floats: the standard library keeps them.
        {"big": 2**64, "neg": -(2**63) - 1, "long": 10**30},
        {"pi": 3.141592653589793, "tiny": 5e-324},
    ]
    for internal in cases:
        text = json.dumps(internal)
        parsed = parse_internal_text(text)
        assert parsed == internal and json.dumps(parsed) == text
    # What orjson refuses, the standard library reads.
    assert parse_internal_text('{"x": NaN}')["x"] != parse_internal_text('{"x": NaN}')["x"]
    assert parse_internal_text('{"lone": "\\ud800"}') == {"lone": "\ud800"}
