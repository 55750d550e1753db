"""Signing, hashing and event ids, against the spec's "Cryptographic Test Vectors"
(appendices) and events created by Synapse."""

import copy
import hashlib
import json

import pytest

from homeserver.protocol.canonical import decode_base64, encode_base64
from homeserver.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat
from homeserver.protocol.signing import (
    SignatureError,
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    decode_signing_key,
    encode_signing_key,
    event_from_pdu,
    generate_signing_key,
    key_id,
    room_id_from_create_event_id,
    sign_and_identify,
    sign_event,
    sign_json,
    verify_event_signature,
    verify_json,
    verify_key_base64,
)

V = KNOWN_ROOM_VERSIONS
SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SERVER = "domain"
KEY_ID = "ed25519:1"


@pytest.fixture
def key():
    return decode_signing_key(f"ed25519 1 {SEED}")


def minimal_event():
    # Appendices, "Event Signing": the minimally-sized event.
    return {
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "signatures": {},
        "hashes": {},
        "type": "X",
        "content": {},
        "prev_events": [],
        "auth_events": [],
        "depth": 3,
        "unsigned": {"age_ts": 1000000},
    }


def message_event():
    # Appendices, "Event Signing": the event containing redactable content.
    return {
        "content": {"body": "Here is the message content"},
        "event_id": "$0:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {},
        "unsigned": {"age_ts": 1000000},
    }


# A room version 5 create event made by Synapse (matrix.org's jki.re), with the id
# Synapse gave it; gomatrixserverlib's eventversion_test.go uses it too.
JKI_CREATE = json.loads(
    r"""{"auth_events": [], "prev_events": [], "type": "m.room.create",
    "room_id": "!uXDCzlYgCTHtiWCkEx:jki.re", "sender": "@erikj:jki.re",
    "content": {"room_version": "5", "predecessor": {"room_id": "!gdRMqOrTFdOCYHNwOo:half-shot.uk",
    "event_id": "$LP7ROBc4b+cMc1UE9haIz8q5AK2AIW4eJ90FfKLvyZI"}, "creator": "@erikj:jki.re"},
    "depth": 1, "prev_state": [], "state_key": "", "origin": "jki.re",
    "origin_server_ts": 1560284621137,
    "hashes": {"sha256": "IX6zuNiJpJPNf70BLleL3HSCpjKeq9Uhu7uUpyDjBmc"},
    "signatures": {"jki.re": {"ed25519:auto":
    "O4IyFfF2PPtGp5uaDm8t57dZbdh8vc8Q64LgCwvzYRVItAMI0uisfiAFaxkVT7MRpzh6N2QNN5NMRXZKmgPYDA"}},
    "unsigned": {"age": 1321650}}"""
)

# A room version 1 event made by Synapse, with its content hash.
SYNAPSE_V1_EVENT = json.loads(
    r"""{"auth_events":[["$oXL79cT7fFxR7dPH:localhost",{"sha256":"abjkiDSg1RkuZrbj2jZoGMlQaaj1Ue3Jhi7I7NlKfXY"}],
    ["$IVUsaSkm1LBAZYYh:localhost",{"sha256":"X7RUj46hM/8sUHNBIFkStbOauPvbDzjSdH4NibYWnko"}],
    ["$VS2QT0EeArZYi8wf:localhost",{"sha256":"k9eM6utkCH8vhLW9/oRsH74jOBS/6RVK42iGDFbylno"}]],
    "content":{"name":"test3"},"depth":7,"event_id":"$yvN1b43rlmcOs5fY:localhost",
    "hashes":{"sha256":"Oh1mwI1jEqZ3tgJ+V1Dmu5nOEGpCE4RFUqyJv2gQXKs"},"origin":"localhost",
    "origin_server_ts":1510854416361,
    "prev_events":[["$FqI6TVvWpcbcnJ97:localhost",{"sha256":"upCsBqUhNUgT2/+zkzg8TbqdQpWWKQnZpGJc6KcbUC4"}]],
    "prev_state":[],"room_id":"!19Mp0U9hjajeIiw1:localhost","sender":"@test:localhost",
    "signatures":{"localhost":{"ed25519:u9kP":
    "5IzSuRXkxvbTp0vZhhXYZeOe+619iG3AybJXr7zfNn/4vHz4TH7qSJVQXSaHHvcTcDodAKHnTG1WDulgO5okAQ"}},
    "state_key":"","type":"m.room.name"}"""
)


# --- Signing keys -------------------------------------------------------------------


def test_decode_signing_key_from_spec_seed(key):
    assert key.alg == "ed25519"
    assert key.version == "1"
    assert key_id(key) == KEY_ID
    assert bytes(key) == decode_base64(SEED)
    # The public key of the spec's seed (also quoted in ruma-signatures' docs).
    assert verify_key_base64(key) == "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
    assert verify_key_base64(key.verify_key) == verify_key_base64(key)


def test_signing_key_line_round_trip(key):
    line = encode_signing_key(key)
    algorithm, version, seed = line.split(" ")
    assert (algorithm, version) == ("ed25519", "1")
    assert decode_base64(seed) == decode_base64(SEED)
    assert "=" not in seed
    again = decode_signing_key(line + "\n")
    assert bytes(again) == bytes(key) and again.version == "1"


def test_generate_signing_key():
    key = generate_signing_key("a_XyZ")
    assert key_id(key) == "ed25519:a_XyZ"
    again = decode_signing_key(encode_signing_key(key))
    assert key_id(again) == "ed25519:a_XyZ"
    assert bytes(again) == bytes(key)
    assert bytes(generate_signing_key("a_XyZ")) != bytes(key)


@pytest.mark.parametrize(
    "line", ["", "ed25519 1", "rsa 1 " + SEED, "ed25519 1 !!notbase64", "ed25519 1 AAAA"]
)
def test_decode_signing_key_rejects_bad_lines(line):
    with pytest.raises(ValueError):
        decode_signing_key(line)


# --- JSON signing (appendices, "JSON Signing") ----------------------------------------


def test_sign_empty_object(key):
    assert sign_json({}, SERVER, key) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_sign_object_with_data(key):
    assert sign_json({"one": 1, "two": "Two"}, SERVER, key) == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }


def test_sign_json_ignores_unsigned_and_keeps_other_signatures(key):
    obj = {
        "one": 1,
        "two": "Two",
        "unsigned": {"age": 5},
        "signatures": {"other": {"ed25519:x": "s"}},
    }
    sign_json(obj, SERVER, key)
    assert obj["unsigned"] == {"age": 5}
    assert obj["signatures"]["other"] == {"ed25519:x": "s"}
    assert obj["signatures"][SERVER][KEY_ID] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
    )


def test_verify_json(key):
    signed = sign_json({"one": 1, "two": "Two"}, SERVER, key)
    verify_json(signed, SERVER, KEY_ID, key.verify_key)
    signed["unsigned"] = {"anything": True}  # not covered by the signature
    verify_json(signed, SERVER, KEY_ID, key.verify_key)

    with pytest.raises(SignatureError):
        verify_json({**signed, "one": 2}, SERVER, KEY_ID, key.verify_key)
    with pytest.raises(SignatureError):
        verify_json(signed, "other.server", KEY_ID, key.verify_key)
    with pytest.raises(SignatureError):
        verify_json(signed, SERVER, "ed25519:2", key.verify_key)
    with pytest.raises(SignatureError):
        verify_json({"one": 1, "two": "Two"}, SERVER, KEY_ID, key.verify_key)
    with pytest.raises(SignatureError):
        verify_json(signed, SERVER, KEY_ID, generate_signing_key("1").verify_key)
    bad_b64 = copy.deepcopy(signed)
    bad_b64["signatures"][SERVER][KEY_ID] = "%%%"
    with pytest.raises(SignatureError):
        verify_json(bad_b64, SERVER, KEY_ID, key.verify_key)


# --- Content hash, event signing (appendices, "Event Signing") --------------------------


def test_minimal_event_content_hash_and_signature(key):
    event = minimal_event()
    add_content_hash(event)
    assert event["hashes"] == {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}
    sign_event(event, V["1"], SERVER, key)
    expected = minimal_event()
    expected["hashes"] = {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}
    expected["signatures"] = {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    }
    assert event == expected
    verify_event_signature(event, V["1"], SERVER, KEY_ID, key.verify_key)


def test_message_event_content_hash_and_signature(key):
    event = message_event()
    add_content_hash(event)
    assert event["hashes"] == {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}
    sign_event(event, V["1"], SERVER, key)
    assert event["signatures"] == {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    }
    assert event["content"] == {"body": "Here is the message content"}
    assert event["unsigned"] == {"age_ts": 1000000}


@pytest.mark.parametrize("version", [str(v) for v in range(1, 11)])
def test_spec_event_signature_holds_for_versions_keeping_origin(version, key):
    # The spec's vector includes "origin", which the redaction algorithm keeps up to v10.
    event = minimal_event()
    add_content_hash(event)
    sign_event(event, V[version], SERVER, key)
    assert event["signatures"][SERVER][KEY_ID].startswith("KxwGjPSDEtvnFgU00fwFz")


def test_v11_signature_no_longer_covers_origin(key):
    event = minimal_event()
    add_content_hash(event)
    sign_event(event, V["11"], SERVER, key)
    signature = event["signatures"][SERVER][KEY_ID]
    assert not signature.startswith("KxwGjPSDEtvnFgU00fwFz")
    # Changing origin leaves a v11 signature valid, but not a v10 one.
    event["origin"] = "elsewhere"
    verify_event_signature(event, V["11"], SERVER, KEY_ID, key.verify_key)
    old = minimal_event()
    add_content_hash(old)
    sign_event(old, V["10"], SERVER, key)
    old["origin"] = "elsewhere"
    with pytest.raises(SignatureError):
        verify_event_signature(old, V["10"], SERVER, KEY_ID, key.verify_key)


def test_event_signature_survives_redaction_but_not_tampering(key):
    event = message_event()
    add_content_hash(event)
    sign_event(event, V["1"], SERVER, key)
    # A redacted copy (content stripped) still verifies, but its content hash does not match.
    redacted = {**event, "content": {}}
    verify_event_signature(redacted, V["1"], SERVER, KEY_ID, key.verify_key)
    assert check_content_hash(event)
    assert not check_content_hash(redacted)
    tampered = {**event, "sender": "@mallory:domain"}
    with pytest.raises(SignatureError):
        verify_event_signature(tampered, V["1"], SERVER, KEY_ID, key.verify_key)


def test_sign_event_keeps_existing_signatures(key):
    event = minimal_event()
    event["signatures"] = {"other.server": {"ed25519:x": "abc"}}
    add_content_hash(event)
    sign_event(event, V["1"], SERVER, key)
    assert event["signatures"]["other.server"] == {"ed25519:x": "abc"}
    assert event["signatures"][SERVER][KEY_ID].startswith("KxwGjPSDEtvnFgU00fwFz")


def test_sign_event_requires_the_content_hash(key):
    event = minimal_event()
    del event["hashes"]
    with pytest.raises(ValueError):
        sign_event(event, V["10"], SERVER, key)


def test_content_hash_ignores_unsigned_signatures_and_hashes():
    event = minimal_event()
    digest = compute_content_hash(event)
    assert encode_base64(digest) == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
    event["unsigned"] = {"age": 1}
    event["signatures"] = {"x": {"y": "z"}}
    event["hashes"] = {"sha256": "whatever"}
    assert compute_content_hash(event) == digest
    event["content"] = {"a": 1}
    assert compute_content_hash(event) != digest


def test_check_content_hash():
    assert check_content_hash(SYNAPSE_V1_EVENT)
    assert check_content_hash(JKI_CREATE)
    assert not check_content_hash({**JKI_CREATE, "depth": 2})
    assert not check_content_hash({**JKI_CREATE, "hashes": {}})
    assert not check_content_hash({**JKI_CREATE, "hashes": {"sha256": "!!"}})
    assert not check_content_hash({k: v for k, v in JKI_CREATE.items() if k != "hashes"})


# --- Reference hashes and event ids --------------------------------------------------


def test_event_id_v1_v2_is_taken_from_the_event():
    assert compute_event_id(SYNAPSE_V1_EVENT, V["1"]) == "$yvN1b43rlmcOs5fY:localhost"
    assert compute_event_id(SYNAPSE_V1_EVENT, V["2"]) == "$yvN1b43rlmcOs5fY:localhost"
    with pytest.raises(ValueError):
        compute_event_id(minimal_event(), V["1"])


def test_event_id_v3_is_standard_base64_of_reference_hash():
    assert compute_event_id(JKI_CREATE, V["3"]) == "$RrGxF28UrHLmoASHndYb9Jb/1SFww2ptmtur9INS438"


@pytest.mark.parametrize("version", ["4", "5", "6", "7", "8", "9", "10"])
def test_event_id_v4_on_is_url_safe_base64(version):
    expected = "$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438"
    assert compute_event_id(JKI_CREATE, V[version]) == expected


def test_reference_hash_is_sha256_of_the_redacted_event():
    # Written out by hand: the redacted event (v11 rules: no origin, membership,
    # prev_state), without signatures and unsigned, in canonical JSON.
    event = minimal_event()
    add_content_hash(event)
    event["signatures"] = {"domain": {"ed25519:1": "sig"}}
    event["content"] = {"body": "dropped by redaction"}
    event["age_ts"] = 1234
    event["hashes"] = {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}
    canonical = (
        b'{"auth_events":[],"content":{},"depth":3,'
        b'"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},'
        b'"origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain",'
        b'"sender":"@a:domain","type":"X"}'
    )
    expected = hashlib.sha256(canonical).digest()
    assert compute_reference_hash(event, V["11"]) == expected
    assert compute_event_id(event, V["11"]) == "$" + encode_base64(expected, urlsafe=True)
    # Before v11 "origin" is part of it.
    with_origin = canonical.replace(b'"origin_server_ts"', b'"origin":"domain","origin_server_ts"')
    assert compute_reference_hash(event, V["10"]) == hashlib.sha256(with_origin).digest()


def test_reference_hash_ignores_unsigned_and_signatures():
    base = compute_reference_hash(JKI_CREATE, V["5"])
    changed = {**JKI_CREATE, "unsigned": {"age": 1}, "signatures": {}}
    assert compute_reference_hash(changed, V["5"]) == base
    assert compute_reference_hash({**JKI_CREATE, "depth": 2}, V["5"]) != base


def test_v12_room_id_is_derived_from_the_create_event(key):
    create = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@creator:domain",
        "content": {"room_version": "12"},
        "origin_server_ts": 1000000,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
    }
    add_content_hash(create)
    sign_event(create, V["12"], SERVER, key)
    event_id = compute_event_id(create, V["12"])
    canonical = json.dumps(
        {k: v for k, v in create.items() if k != "signatures"},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    expected_hash = encode_base64(hashlib.sha256(canonical).digest(), urlsafe=True)
    assert event_id == "$" + expected_hash
    assert room_id_from_create_event_id(event_id) == "!" + expected_hash
    assert len(room_id_from_create_event_id(event_id)) == 44
    with pytest.raises(ValueError):
        room_id_from_create_event_id("!notanevent")


def test_event_from_pdu():
    event = event_from_pdu(JKI_CREATE, V["5"])
    assert event.event_id == "$RrGxF28UrHLmoASHndYb9Jb_1SFww2ptmtur9INS438"
    assert event.json is JKI_CREATE
    assert event.room_version is V["5"]
    assert event.type == "m.room.create"
    legacy = event_from_pdu(SYNAPSE_V1_EVENT, V["1"])
    assert legacy.event_id == "$yvN1b43rlmcOs5fY:localhost"
    assert legacy.prev_event_ids == ["$FqI6TVvWpcbcnJ97:localhost"]


@pytest.mark.parametrize("version", sorted(V, key=lambda v: (len(v), v)))
def test_sign_and_identify_is_sign_event_then_event_from_pdu(version, key):
    # One encoding for the signature and the event id: the same results as the two steps.
    def built() -> dict:
        event = message_event()
        event.pop("unsigned")
        legacy = V[version].event_format is EventFormat.V1
        event["prev_events"] = [["$a:domain", {}]] if legacy else ["$a"]
        if legacy:
            event["event_id"] = "$legacy:domain"
        add_content_hash(event)
        return event

    two_steps = built()
    sign_event(two_steps, V[version], SERVER, key)
    expected = event_from_pdu(two_steps, V[version])
    event = sign_and_identify(built(), V[version], SERVER, key)
    assert event.json == two_steps
    assert event.event_id == expected.event_id == compute_event_id(event.json, V[version])
    verify_event_signature(event.json, V[version], SERVER, KEY_ID, key.verify_key)
