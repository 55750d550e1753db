"""Format and size checks of PDUs."""

import pytest
from canonicaljson import encode_canonical_json

from homeserver.protocol.pdu_checks import PduFormatError, check_pdu_format
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS


def pdu(**overrides):
    event = {
        "type": "m.room.message",
        "room_id": "!room:example.com",
        "sender": "@alice:example.com",
        "content": {"body": "hello"},
        "depth": 3,
        "origin_server_ts": 1000000,
        "prev_events": ["$prev"],
        "auth_events": ["$a", "$b"],
        "hashes": {"sha256": "x"},
        "signatures": {"example.com": {"ed25519:1": "y"}},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not DROP}


DROP = object()


def v1_pdu(**overrides):
    defaults = {
        "event_id": "$ev:example.com",
        "prev_events": [["$prev:example.com", {"sha256": "h"}]],
        "auth_events": [["$a:example.com", {"sha256": "h"}]],
    }
    return pdu(**{**defaults, **overrides})


def assert_rejected(event, version, fragment):
    with pytest.raises(PduFormatError) as info:
        check_pdu_format(event, V[version])
    assert fragment in str(info.value)


@pytest.mark.parametrize("version", [str(v) for v in range(3, 13)])
def test_valid_pdu_passes(version):
    check_pdu_format(pdu(), V[version])
    check_pdu_format(pdu(state_key="", type="m.room.name", content={"name": "n"}), V[version])


@pytest.mark.parametrize("version", ["1", "2"])
def test_valid_v1_pdu_passes(version):
    check_pdu_format(v1_pdu(), V[version])


@pytest.mark.parametrize(
    "key",
    ["type", "room_id", "sender", "content", "depth", "origin_server_ts", "prev_events", "auth_events"],
)
def test_missing_required_key(key):
    assert_rejected(pdu(**{key: DROP}), "10", f"missing required key '{key}'")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("type", 5, "'type' must be a string"),
        ("room_id", ["!r:x.y"], "'room_id' must be a string"),
        ("sender", None, "'sender' must be a string"),
        ("content", [], "'content' must be an object"),
        ("content", "text", "'content' must be an object"),
        ("depth", "3", "'depth' must be an integer"),
        ("depth", True, "'depth' must be an integer"),
        ("origin_server_ts", 1.0, "'origin_server_ts' must be an integer"),
        ("prev_events", "$prev", "'prev_events' must be a list"),
        ("auth_events", {}, "'auth_events' must be a list"),
        ("state_key", 0, "'state_key' must be a string"),
        ("hashes", [], "'hashes' must be an object"),
        ("signatures", "sig", "'signatures' must be an object"),
        ("unsigned", 1, "'unsigned' must be an object"),
    ],
)
def test_wrong_types(key, value, expected):
    assert_rejected(pdu(**{key: value}), "5", expected)


def test_v1_needs_event_id_and_pair_references():
    assert_rejected(v1_pdu(event_id=DROP), "1", "missing required key 'event_id'")
    assert_rejected(pdu(event_id="$e:x.y"), "2", "invalid event reference")
    assert_rejected(v1_pdu(prev_events=[["$p:x.y"]]), "1", "invalid event reference")
    # Later versions list plain event ids.
    assert_rejected(pdu(prev_events=[["$p:x.y", {"sha256": "h"}]]), "3", "'prev_events' holds")
    assert_rejected(pdu(auth_events=[5]), "11", "'auth_events' holds")


def test_reference_counts():
    check_pdu_format(pdu(prev_events=[f"$p{i}" for i in range(20)]), V["10"])
    too_many = pdu(prev_events=[f"$p{i}" for i in range(21)])
    assert_rejected(too_many, "10", "more than 20 prev_events")
    check_pdu_format(pdu(auth_events=[f"$a{i}" for i in range(10)]), V["10"])
    too_many = pdu(auth_events=[f"$a{i}" for i in range(11)])
    assert_rejected(too_many, "10", "more than 10 auth_events")


def test_depth_range():
    assert_rejected(pdu(depth=-1), "4", "'depth' is out of range")
    check_pdu_format(pdu(depth=2**62), V["4"])  # fine before strict canonical JSON
    assert_rejected(pdu(depth=2**62), "6", "integer out of range at depth")


def test_sender_must_be_a_user_id():
    assert_rejected(pdu(sender="alice"), "10", "'sender' is not a valid user id")
    assert_rejected(pdu(sender="@alice:bad_host"), "10", "'sender' is not a valid user id")
    check_pdu_format(pdu(sender="@Historical User:example.com"), V["10"])


@pytest.mark.parametrize("key", ["sender", "room_id", "state_key", "type", "event_id"])
def test_key_length_limits(key):
    if key == "sender":
        ok, too_long = "@" + "a" * 242 + ":example.com", "@" + "a" * 243 + ":example.com"
    else:
        ok, too_long = "$" + "é" * 127, "$" + "é" * 128  # 255 and 257 bytes
    assert len(ok.encode()) == 255 and len(too_long.encode()) > 255
    check_pdu_format(pdu(**{key: ok}), V["10"])
    assert_rejected(pdu(**{key: too_long}), "10", f"'{key}' is longer than 255 bytes")


def test_whole_event_size_limit():
    base = pdu(content={"body": ""})
    room = 65536 - len(encode_canonical_json(base))
    check_pdu_format(pdu(content={"body": "x" * room}), V["10"])
    assert_rejected(pdu(content={"body": "x" * (room + 1)}), "10", "65537 bytes, more than 65536")
    # Signatures count towards it too.
    signatures = {"example.com": {"ed25519:1": "y" * (room + 2)}}
    assert_rejected(pdu(content={"body": ""}, signatures=signatures), "10", "more than 65536")


@pytest.mark.parametrize("version", ["6", "9", "11", "12"])
def test_strict_canonical_json_from_v6(version):
    float_pdu = pdu(content={"body": "x", "n": 1.5})
    assert_rejected(float_pdu, version, "float values are not allowed at content.n")
    big_pdu = pdu(content={"deep": [{"n": 2**53}]})
    assert_rejected(big_pdu, version, "integer out of range at content.deep[0].n")
    small_pdu = pdu(origin_server_ts=-(2**53))
    assert_rejected(small_pdu, version, "integer out of range at origin_server_ts")
    check_pdu_format(pdu(content={"n": 2**53 - 1, "m": -(2**53) + 1}), V[version])


@pytest.mark.parametrize("version", ["1", "3", "5"])
def test_floats_and_big_integers_allowed_before_v6(version):
    event = v1_pdu() if version == "1" else pdu()
    event["content"] = {"n": 1.5, "big": 2**60}
    check_pdu_format(event, V[version])


def test_v12_create_event_has_no_room_id():
    create = pdu(type="m.room.create", state_key="", room_id=DROP, prev_events=[], auth_events=[])
    check_pdu_format(create, V["12"])
    assert_rejected(create, "11", "missing required key 'room_id'")
    assert_rejected(pdu(room_id=DROP), "12", "missing required key 'room_id'")
    assert_rejected({**create, "room_id": 7}, "12", "'room_id' must be a string")


def test_not_an_object():
    with pytest.raises(PduFormatError):
        check_pdu_format(["not", "an", "event"], V["10"])
