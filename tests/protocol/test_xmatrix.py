"""X-Matrix request authentication: the header grammar (RFC 7235 as the spec
narrows it), the signed request object and the signature itself."""

import json

import pytest

from homeserver.protocol.canonical import encode_base64
from homeserver.protocol.signing import SignatureError, decode_signing_key
from homeserver.protocol.xmatrix import (
    XMatrixAuth,
    XMatrixError,
    format_x_matrix,
    parse_x_matrix,
    request_json,
    sign_request,
    verify_request,
)

SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"  # the spec's test vector key
SPEC_HEADER = (
    'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",'
    'key="ed25519:key1",sig="ABCDEF..."'
)


@pytest.fixture
def key():
    return decode_signing_key(f"ed25519 1 {SEED}")


def test_spec_example_header():
    assert parse_x_matrix(SPEC_HEADER) == XMatrixAuth(
        origin="origin.hs.example.com",
        destination="destination.hs.example.com",
        key_id="ed25519:key1",
        signature="ABCDEF...",
    )


def test_format_round_trips_and_matches_spec_shape():
    auth = parse_x_matrix(SPEC_HEADER)
    assert format_x_matrix(auth) == SPEC_HEADER
    assert parse_x_matrix(format_x_matrix(auth)) == auth


@pytest.mark.parametrize(
    "header",
    [
        # scheme and names are case-insensitive, order does not matter
        'x-matrix KEY="ed25519:key1",Sig="ABCDEF...",ORIGIN="origin.hs.example.com",'
        'destination="destination.hs.example.com"',
        # bare tokens, with the colon older servers leave unquoted
        "X-Matrix origin=origin.hs.example.com,destination=destination.hs.example.com,"
        'key=ed25519:key1,sig="ABCDEF..."',
        # whitespace around separators, several spaces after the scheme
        'X-Matrix   origin = "origin.hs.example.com" , destination="destination.hs.example.com",'
        '\tkey="ed25519:key1",  sig="ABCDEF..."  ',
        # unknown parameters are ignored, quoted or not
        'X-Matrix origin="origin.hs.example.com",future=1,destination="destination.hs.example.com",'
        'key="ed25519:key1",other="a, \\"b\\"",sig="ABCDEF..."',
        # backslash escapes are undone
        'X-Matrix origin="origin.hs.\\example.com",destination="destination.hs.example.com",'
        'key="ed25519:\\k\\ey1",sig="ABCDEF..."',
    ],
)
def test_header_variants(header):
    assert parse_x_matrix(header) == parse_x_matrix(SPEC_HEADER)


def test_destination_is_optional_for_old_servers():
    auth = parse_x_matrix('X-Matrix origin=old.example,key="ed25519:a",sig="c2ln"')
    assert auth.destination is None
    assert format_x_matrix(auth) == 'X-Matrix origin="old.example",key="ed25519:a",sig="c2ln"'


def test_format_escapes_quotes_and_backslashes():
    auth = XMatrixAuth("a.example", "b.example", 'ed25519:x"y\\z', "sig")
    header = format_x_matrix(auth)
    assert 'key="ed25519:x\\"y\\\\z"' in header
    assert parse_x_matrix(header) == auth


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer abc",
        "X-Matrix",
        "X-Matrixorigin=a,key=ed25519:a,sig=x",
        'X-Matrix key="ed25519:a",sig="x"',  # no origin
        'X-Matrix origin="a.example",sig="x"',  # no key
        'X-Matrix origin="a.example",key="ed25519:a"',  # no sig
        'X-Matrix origin="a.example",key="ed25519:a",sig=""',
        'X-Matrix origin="a.example",key="ed25519",sig="x"',  # key without version
        'X-Matrix origin="a.example",key="ed25519:a",sig="x',  # unterminated quote
        'X-Matrix origin="a.example",key="ed25519:a",sig="x\\',
        'X-Matrix origin="a.example" key="ed25519:a",sig="x"',  # no comma
        'X-Matrix origin="a.example",key="ed25519:a",sig="x",',  # trailing comma
        "X-Matrix origin=,key=ed25519:a,sig=x",
        "X-Matrix origin=a/b,key=ed25519:a,sig=x",  # "/" is not a token character
        'X-Matrix origin="a.example",origin="b.example",key="ed25519:a",sig="x"',
        'X-Matrix origin="not a server",key="ed25519:a",sig="x"',
        'X-Matrix origin="a.example",destination="b example",key="ed25519:a",sig="x"',
        "X-Matrix =x",
    ],
)
def test_malformed_headers_are_refused(header):
    with pytest.raises(XMatrixError):
        parse_x_matrix(header)


def test_request_json_shape():
    assert request_json("get", "/_matrix/federation/v1/version", "a", "b", None) == {
        "method": "GET",
        "uri": "/_matrix/federation/v1/version",
        "origin": "a",
        "destination": "b",
    }
    body = {"pdus": [], "edus": []}
    assert request_json("PUT", "/t?x=1", "a", "b", body)["content"] == body
    # An empty object is content too (PUT and POST always send one).
    assert request_json("POST", "/t", "a", "b", {})["content"] == {}


def test_sign_request_is_the_ed25519_signature_of_the_canonical_request(key):
    content = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"x": 1.5}}]}
    uri = "/_matrix/federation/v1/send/123?a=%2F&b=2"
    header = sign_request(key, "PUT", uri, "origin.example", "dest.example:8448", content)
    auth = parse_x_matrix(header)
    assert (auth.origin, auth.destination, auth.key_id) == (
        "origin.example", "dest.example:8448", "ed25519:1",
    )
    # Step 1 of the spec done by hand: canonical JSON (sorted keys, no spaces), then ed25519.
    canonical = json.dumps(
        {"content": content, "destination": "dest.example:8448", "method": "PUT",
         "origin": "origin.example", "uri": uri},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    ).encode()
    assert auth.signature == encode_base64(key.sign(canonical).signature)
    verify_request(auth, "PUT", uri, "dest.example:8448", content, key.verify_key)


def test_verify_request_refuses_any_change(key):
    content = {"a": 1}
    auth = parse_x_matrix(sign_request(key, "POST", "/p", "o.example", "d.example", content))
    verify_request(auth, "POST", "/p", "d.example", content, key.verify_key)
    for method, uri, destination, body in [
        ("PUT", "/p", "d.example", content),
        ("POST", "/p?x=1", "d.example", content),
        ("POST", "/p", "other.example", content),
        ("POST", "/p", "d.example", {"a": 2}),
        ("POST", "/p", "d.example", None),
    ]:
        with pytest.raises(SignatureError):
            verify_request(auth, method, uri, destination, body, key.verify_key)
    other = decode_signing_key("ed25519 1 " + "A" * 43)
    with pytest.raises(SignatureError):
        verify_request(auth, "POST", "/p", "d.example", content, other.verify_key)
