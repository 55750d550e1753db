"""Key responses (/_matrix/key/v2/server), notary signatures, the validity rule of room
version 5 and the servers whose signatures an event needs."""

import copy

import pytest

from homeserver.protocol.events import Event
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.protocol.server_keys import (
    MAX_KEY_VALIDITY_MS,
    ServerKeysError,
    check_notary_signature,
    min_valid_until_for_event,
    parse_server_keys_response,
    required_signature_servers,
    server_keys_object,
    signature_key_ids,
)
from homeserver.protocol.signing import (
    SignatureError,
    generate_signing_key,
    key_id,
    sign_json,
    verify_key_base64,
)

V = KNOWN_ROOM_VERSIONS
SERVER = "keys.example"
NOW = 1_700_000_000_000
HOUR = 3600 * 1000


@pytest.fixture(scope="module")
def key():
    return generate_signing_key("k1")


@pytest.fixture(scope="module")
def old_key():
    return generate_signing_key("old")


def _response(key, old_key=None, valid_until_ts=NOW + 24 * HOUR, server=SERVER, sign=True):
    old = {key_id(old_key): (verify_key_base64(old_key), NOW - HOUR)} if old_key else {}
    body = server_keys_object(server, {key_id(key): verify_key_base64(key)}, old, valid_until_ts)
    return sign_json(body, server, key) if sign else body


def test_a_signed_response_gives_current_and_old_keys(key, old_key):
    response = parse_server_keys_response(_response(key, old_key), SERVER, NOW)
    assert response.server_name == SERVER
    assert response.valid_until_ts == NOW + 24 * HOUR
    current = response.keys["ed25519:k1"]
    assert bytes(current.verify_key) == bytes(key.verify_key)
    assert current.valid_until_ts == NOW + 24 * HOUR and not current.is_old
    old = response.keys["ed25519:old"]
    assert old.is_old and old.expired_ts == NOW - HOUR and old.valid_until_ts == NOW - HOUR
    assert bytes(old.verify_key) == bytes(old_key.verify_key)


def test_validity_is_capped_at_seven_days_after_fetching(key):
    response = parse_server_keys_response(_response(key, valid_until_ts=NOW + 365 * 24 * HOUR), SERVER, NOW)
    # The published value is kept (notaries compare it), the key's use is capped.
    assert response.valid_until_ts == NOW + 365 * 24 * HOUR
    assert response.keys["ed25519:k1"].valid_until_ts == NOW + MAX_KEY_VALIDITY_MS


def test_the_response_must_name_the_server_asked_for(key):
    with pytest.raises(ServerKeysError, match="expected"):
        parse_server_keys_response(_response(key, server="other.example"), SERVER, NOW)


@pytest.mark.parametrize("value", [None, "123", True, -1, 1.5])
def test_valid_until_ts_must_be_a_timestamp(key, value):
    body = _response(key, sign=False)
    if value is None:
        del body["valid_until_ts"]
    else:
        body["valid_until_ts"] = value
    with pytest.raises(ServerKeysError):
        parse_server_keys_response(sign_json(body, SERVER, key), SERVER, NOW)


def test_an_unsigned_response_is_refused(key):
    with pytest.raises(ServerKeysError, match="not signed"):
        parse_server_keys_response(_response(key, sign=False), SERVER, NOW)


def test_a_signature_by_a_key_not_in_verify_keys_does_not_count(key, old_key):
    # Signed with the old key only: old keys sign events, not key responses.
    body = _response(key, old_key, sign=False)
    with pytest.raises(ServerKeysError, match="verify_keys"):
        parse_server_keys_response(sign_json(body, SERVER, old_key), SERVER, NOW)


def test_a_signature_by_another_server_does_not_count(key):
    body = _response(key, sign=False)
    with pytest.raises(ServerKeysError, match="not signed"):
        parse_server_keys_response(sign_json(body, "notary.example", key), SERVER, NOW)


def test_a_tampered_response_is_refused(key):
    body = _response(key)
    body["valid_until_ts"] += 1
    with pytest.raises(ServerKeysError, match="bad self-signature"):
        parse_server_keys_response(body, SERVER, NOW)


def test_a_key_that_is_not_a_public_key_is_refused(key):
    body = _response(key, sign=False)
    body["verify_keys"]["ed25519:junk"] = {"key": "AAAA"}
    with pytest.raises(ServerKeysError, match="ed25519:junk"):
        parse_server_keys_response(sign_json(body, SERVER, key), SERVER, NOW)


def test_an_old_key_needs_expired_ts(key, old_key):
    body = _response(key, old_key, sign=False)
    del body["old_verify_keys"]["ed25519:old"]["expired_ts"]
    with pytest.raises(ServerKeysError, match="expired_ts"):
        parse_server_keys_response(sign_json(body, SERVER, key), SERVER, NOW)


def test_keys_of_other_algorithms_are_skipped(key):
    body = _response(key, sign=False)
    body["verify_keys"]["curve25519:x"] = {"key": "whatever"}
    response = parse_server_keys_response(sign_json(body, SERVER, key), SERVER, NOW)
    assert set(response.keys) == {"ed25519:k1"}


def test_a_key_listed_as_current_and_old_is_current(key):
    body = _response(key, sign=False)
    body["old_verify_keys"] = {"ed25519:k1": {"key": verify_key_base64(key), "expired_ts": 5}}
    response = parse_server_keys_response(sign_json(body, SERVER, key), SERVER, NOW)
    assert not response.keys["ed25519:k1"].is_old


def test_our_object_never_lists_the_current_key_as_old(key):
    body = server_keys_object(SERVER, {"ed25519:k1": "AAA"}, {"ed25519:k1": ("AAA", 5), "ed25519:o": ("BBB", 6)}, 9)
    assert body == {
        "server_name": SERVER,
        "verify_keys": {"ed25519:k1": {"key": "AAA"}},
        "old_verify_keys": {"ed25519:o": {"key": "BBB", "expired_ts": 6}},
        "valid_until_ts": 9,
    }


# --- Notary signatures ---------------------------------------------------------------


def test_a_notary_signature_is_checked_against_its_pinned_keys(key):
    notary_key = generate_signing_key("n")
    relayed = sign_json(_response(key), "notary.example", notary_key)
    pinned = {key_id(notary_key): verify_key_base64(notary_key)}
    check_notary_signature(relayed, "notary.example", pinned)
    # The origin's own signature is still there and still verifies.
    parse_server_keys_response(copy.deepcopy(relayed), SERVER, NOW)

    other = generate_signing_key("n")  # same key id, another key
    with pytest.raises(SignatureError):
        check_notary_signature(relayed, "notary.example", {key_id(other): verify_key_base64(other)})
    with pytest.raises(SignatureError, match="pinned"):
        check_notary_signature(relayed, "notary.example", {"ed25519:else": verify_key_base64(other)})
    with pytest.raises(SignatureError, match="not signed"):
        check_notary_signature(_response(key), "notary.example", pinned)


# --- Events ---------------------------------------------------------------------------


def _event(version, event_id="$abc", **fields):
    event_json = {
        "type": "m.room.message", "sender": "@alice:a.example", "room_id": "!r:a.example",
        "content": {}, "origin_server_ts": NOW, "signatures": {}, **fields,
    }
    return Event(event_json, event_id, V[version])


def test_the_sender_server_signs_every_event():
    assert required_signature_servers(_event("10")) == {"a.example"}


def test_room_versions_1_and_2_also_need_the_event_id_server():
    assert required_signature_servers(_event("1", "$x:b.example")) == {"a.example", "b.example"}
    assert required_signature_servers(_event("2", "$x:a.example")) == {"a.example"}
    assert required_signature_servers(_event("3", "$x:b.example")) == {"a.example"}


def test_restricted_joins_need_the_authorising_server():
    content = {"membership": "join", "join_authorised_via_users_server": "@bob:c.example"}
    join = dict(type="m.room.member", state_key="@alice:a.example", content=content)
    assert required_signature_servers(_event("8", **join)) == {"a.example", "c.example"}
    # Before restricted rooms existed the field meant nothing.
    assert required_signature_servers(_event("7", **join)) == {"a.example"}


def test_an_invite_from_a_third_party_invite_needs_no_sender_signature():
    content = {"membership": "invite", "third_party_invite": {"display_name": "x", "signed": {}}}
    invite = dict(type="m.room.member", state_key="@carol:d.example", content=content)
    assert required_signature_servers(_event("10", **invite)) == set()
    assert required_signature_servers(_event("1", "$i:b.example", **invite)) == {"b.example"}


def test_an_event_without_a_valid_sender_server_fails():
    with pytest.raises(SignatureError):
        required_signature_servers(_event("10", sender="@alice"))


def test_key_validity_matters_from_room_version_5():
    assert min_valid_until_for_event(_event("4")) == 0
    assert min_valid_until_for_event(_event("5")) == NOW
    assert min_valid_until_for_event(_event("12")) == NOW


def test_signature_key_ids_lists_the_ed25519_signatures_of_one_server():
    obj = {"signatures": {"a.example": {"ed25519:1": "x", "ed25519:2": "y", "curve:3": "z"}, "b": {"ed25519:4": "w"}}}
    assert sorted(signature_key_ids(obj, "a.example")) == ["ed25519:1", "ed25519:2"]
    assert signature_key_ids(obj, "c.example") == []
    assert signature_key_ids({"signatures": "nope"}, "a.example") == []
