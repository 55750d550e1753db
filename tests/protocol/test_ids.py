"""Identifier grammar, with the examples of the spec appendix "Identifier Grammar"."""

import pytest

from homeserver.protocol.ids import (
    InvalidIdError,
    UserId,
    is_valid_event_id,
    is_valid_localpart,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    parse_room_alias,
    parse_user_id,
    server_name_of,
)
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS

V1, V3, V4, V11, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("1", "3", "4", "11", "12"))


@pytest.mark.parametrize(
    "name",
    [
        # The spec's own examples.
        "matrix.org",
        "matrix.org:8888",
        "1.2.3.4",
        "1.2.3.4:1234",
        "[1234:5678::abcd]",
        "[1234:5678::abcd]:5678",
        "localhost",
        "my-server.example.com:65535",
        "[::1]",
        "[::ffff:1.2.3.4]:8448",
    ],
)
def test_valid_server_names(name):
    assert is_valid_server_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ":8448",
        "matrix.org:",
        "matrix.org:123456",
        "matrix.org:port",
        "matrix.org:80:80",
        "matrix_org",
        "mätrix.org",
        "matrix org",
        "256.1.1.1",
        "[1234:5678::abcd",
        "[not:an:ip]",
        "[1234:5678::abcd]8448",
        "[1:2:3:4:5:6:7:8:9]",
        "1234:5678::abcd",
        "a" * 256,
    ],
)
def test_invalid_server_names(name):
    assert not is_valid_server_name(name)


def test_parse_user_id():
    assert parse_user_id("@alice:example.com") == UserId("alice", "example.com")
    assert parse_user_id("@alice:[::1]:8448") == UserId("alice", "[::1]:8448")
    assert str(parse_user_id("@a.b_c=d-e/f+g:example.com:1")) == "@a.b_c=d-e/f+g:example.com:1"


def test_historical_user_ids_are_accepted_for_remote_users():
    # Upper case, punctuation, non-ASCII, control characters, even an empty localpart.
    for user_id in ("@Alice:example.com", "@ali ce!:example.com", "@ä€\x01:example.com", "@:x.org"):
        assert is_valid_user_id(user_id), user_id
        assert not is_valid_user_id(user_id, strict=True), user_id
    assert parse_user_id("@Ölaf:example.com").localpart == "Ölaf"


@pytest.mark.parametrize(
    "user_id",
    [
        "alice:example.com",
        "#alice:example.com",
        "@alice",
        "@alice:",
        "@alice:bad_server",
        "@al\x00ice:example.com",
        "@al\ud800ice:example.com",
        None,
        42,
    ],
)
def test_invalid_user_ids(user_id):
    assert not is_valid_user_id(user_id)
    with pytest.raises(InvalidIdError):
        parse_user_id(user_id)


def test_user_id_length_limit_is_255_bytes():
    server = "example.com"
    fits = "@" + "a" * (255 - len(server) - 2) + ":" + server
    assert len(fits) == 255
    assert is_valid_user_id(fits, strict=True)
    assert not is_valid_user_id("@a" + fits[1:])
    # Bytes, not characters: 2-byte code points count twice.
    assert not is_valid_user_id("@" + "é" * 122 + ":" + server)  # 244 + 13 = 257 bytes
    assert is_valid_user_id("@" + "é" * 120 + ":" + server)  # 240 + 13 = 253 bytes


def test_strict_localpart_grammar():
    assert is_valid_localpart("alice")
    assert is_valid_localpart("a.b_c=d-e/f+g0123456789")
    for localpart in ("", "Alice", "ali ce", "alice:", "alice!", "élise", "a*"):
        assert not is_valid_localpart(localpart), localpart


def test_room_ids():
    assert is_valid_room_id("!abc123:matrix.org")
    assert is_valid_room_id("!abc123:matrix.org", V11)
    assert not is_valid_room_id("!abc123:matrix.org", V12)
    v12_id = "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"
    assert is_valid_room_id(v12_id)
    assert is_valid_room_id(v12_id, V12)
    assert not is_valid_room_id(v12_id, V11)
    for room_id in ("abc:matrix.org", "!abc", "!abc:", "!abc:bad_server", "#a:b.c", "!" + "a" * 42):
        assert not is_valid_room_id(room_id), room_id
    assert not is_valid_room_id("!" + "a" * 250 + ":matrix.org")


def test_room_aliases():
    assert parse_room_alias("#room:example.com") == ("room", "example.com")
    assert parse_room_alias("#Räum with spaces:example.com:8448") == (
        "Räum with spaces",
        "example.com:8448",
    )
    assert is_valid_room_alias("#room:example.com")
    for alias in ("room:example.com", "#room", "#room:", "!room:example.com", "#a\x00:x.org"):
        assert not is_valid_room_alias(alias), alias
        with pytest.raises(InvalidIdError):
            parse_room_alias(alias)
    long_alias = "#" + "a" * 243 + ":example.com"  # 256 bytes
    assert not is_valid_room_alias(long_alias)
    assert is_valid_room_alias("#" + "a" * 242 + ":example.com")  # 255 bytes


def test_event_ids():
    assert is_valid_event_id("$a4ecee13e2accdadf56c1025:example.com", V1)
    assert not is_valid_event_id("$a4ecee13e2accdadf56c1025", V1)
    v3_id = "$RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438"
    v4_id = "$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438"
    assert is_valid_event_id(v3_id, V3)
    assert not is_valid_event_id(v4_id, V3)
    assert is_valid_event_id(v4_id, V4)
    assert not is_valid_event_id(v3_id, V4)
    assert not is_valid_event_id(v4_id[:-1], V4)
    assert is_valid_event_id(v3_id) and is_valid_event_id(v4_id)
    for event_id in ("", "$", "abc", "!abc:x.org", "$" + "a" * 255, "$a\x00b"):
        assert not is_valid_event_id(event_id), event_id


def test_server_name_of():
    assert server_name_of("@alice:example.com") == "example.com"
    assert server_name_of("!room:example.com:8448") == "example.com:8448"
    assert server_name_of("#alias:[::1]") == "[::1]"
    assert server_name_of("$abc:localhost") == "localhost"
    assert server_name_of("$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438") is None
    assert server_name_of("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ") is None
    assert server_name_of("@alice:bad_server") is None
