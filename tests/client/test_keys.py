"""End-to-end encryption keys: upload, query, claim, cross-signing, signatures, key backup.

Spec: https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption
"""

from __future__ import annotations

import nacl.signing

from tests.client.e2e_helpers import (
    V3, cross_signing_key, device_keys, public, query, sign, upload, upload_device_keys,
)

PASSWORD = "correct horse battery"


async def test_device_keys_upload_and_query(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    await alice.put(f"{V3}/devices/{alice.device_id}", {"display_name": "Alice's phone"})
    key = nacl.signing.SigningKey.generate()
    uploaded = device_keys(alice, key)
    r = await upload(alice, {"device_keys": uploaded})
    assert r.status == 200, r
    assert r["one_time_key_counts"] == {"signed_curve25519": 0}

    result = await query(bob, {alice.user_id: []})
    got = result["device_keys"][alice.user_id][alice.device_id]
    assert got["keys"] == uploaded["keys"]
    assert got["signatures"] == uploaded["signatures"]
    assert got["unsigned"] == {"device_display_name": "Alice's phone"}
    assert result["failures"] == {}
    # Asking for one device; unknown devices and users without keys give nothing.
    result = await query(bob, {alice.user_id: [alice.device_id, "NOPE"], bob.user_id: []})
    assert list(result["device_keys"][alice.user_id]) == [alice.device_id]
    assert result["device_keys"][bob.user_id] == {}


async def test_device_keys_refused(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    key = nacl.signing.SigningKey.generate()
    good = device_keys(alice, key)

    wrong_user = device_keys(bob, key, device_id=alice.device_id)
    wrong_device = device_keys(alice, key, device_id="OTHERDEVICE")
    forged = dict(good, keys={**good["keys"], f"curve25519:{alice.device_id}": "swapped"})
    other_signer = sign(
        {k: v for k, v in good.items() if k != "signatures"}, alice.user_id, alice.device_id,
        nacl.signing.SigningKey.generate(),
    )
    no_ed25519 = dict(good, keys={f"curve25519:{alice.device_id}": "c"})
    for bad in (wrong_user, wrong_device, forged, other_signer, no_ed25519, "not an object"):
        r = await upload(alice, {"device_keys": bad})
        assert r.status == 400, (bad, r)
        assert r.errcode == "M_INVALID_PARAM"
    r = await upload(alice, {"one_time_keys": {"no-colon": {"key": "k"}}})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await upload(alice, {"one_time_keys": ["a list"]})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    # Nothing was stored.
    assert (await query(bob, {alice.user_id: []}))["device_keys"][alice.user_id] == {}
    r = await upload(alice, {})
    assert r["one_time_key_counts"] == {"signed_curve25519": 0}

    r = await alice.post(f"{V3}/keys/query", {"device_keys": {alice.user_id: "all"}})
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")
    r = await alice.post(f"{V3}/keys/query", {})
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")
    r = await api.request("POST", f"{V3}/keys/query", {"device_keys": {}})
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")


async def test_claim_takes_each_one_time_key_once_then_the_fallback_key(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    otks = {f"signed_curve25519:AAA{i}": {"key": f"otk{i}"} for i in range(2)}
    fallback = {"signed_curve25519:FB1": {"key": "fallback", "fallback": True}}
    r = await upload(alice, {"one_time_keys": otks, "fallback_keys": fallback})
    assert r["one_time_key_counts"] == {"signed_curve25519": 2}
    # Uploading the same keys again (a retried request) adds nothing.
    r = await upload(alice, {"one_time_keys": otks})
    assert r["one_time_key_counts"] == {"signed_curve25519": 2}
    sync = await alice.sync()
    assert sync["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert sync["device_unused_fallback_key_types"] == ["signed_curve25519"]

    wanted = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    claimed = []
    for _ in range(2):
        r = await bob.post(f"{V3}/keys/claim", wanted)
        assert r.status == 200, r
        claimed.append(r["one_time_keys"][alice.user_id][alice.device_id])
    assert sorted(k for c in claimed for k in c) == sorted(otks)
    r = await upload(alice, {})
    assert r["one_time_key_counts"] == {"signed_curve25519": 0}

    # No one-time key left: the fallback key, marked used but still handed out.
    for _ in range(2):
        r = await bob.post(f"{V3}/keys/claim", wanted)
        assert r["one_time_keys"] == {alice.user_id: {alice.device_id: fallback}}
    assert (await alice.sync())["device_unused_fallback_key_types"] == []
    # A new fallback key is unused again.
    await upload(alice, {"fallback_keys": {"signed_curve25519:FB2": {"key": "fallback2", "fallback": True}}})
    assert (await alice.sync())["device_unused_fallback_key_types"] == ["signed_curve25519"]

    # Unknown devices, algorithms and users give no key; bad bodies are refused.
    r = await bob.post(f"{V3}/keys/claim", {"one_time_keys": {
        alice.user_id: {"NOPE": "signed_curve25519", alice.device_id: "other_alg"},
        "@nobody:localhost": {"X": "signed_curve25519"},
    }})
    assert r.status == 200 and r["one_time_keys"] == {}
    r = await bob.post(f"{V3}/keys/claim", {"one_time_keys": {alice.user_id: ["x"]}})
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")


async def test_cross_signing_keys_upload_and_visibility(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    master, self_signing, user_signing = (nacl.signing.SigningKey.generate() for _ in range(3))
    keys = {
        "master_key": cross_signing_key(alice, "master", master),
        "self_signing_key": cross_signing_key(alice, "self_signing", self_signing, master),
        "user_signing_key": cross_signing_key(alice, "user_signing", user_signing, master),
    }
    # The first upload needs no password (as Synapse, MSC3967).
    r = await alice.post(f"{V3}/keys/device_signing/upload", keys)
    assert r.status == 200, r
    # The same keys again: still no password needed.
    r = await alice.post(f"{V3}/keys/device_signing/upload", keys)
    assert r.status == 200, r

    own = await query(alice, {alice.user_id: []})
    assert own["master_keys"][alice.user_id]["keys"] == keys["master_key"]["keys"]
    assert own["self_signing_keys"][alice.user_id] == keys["self_signing_key"]
    assert own["user_signing_keys"][alice.user_id] == keys["user_signing_key"]
    other = await query(bob, {alice.user_id: []})
    assert other["master_keys"][alice.user_id]["keys"] == keys["master_key"]["keys"]
    assert alice.user_id in other["self_signing_keys"]
    assert other["user_signing_keys"] == {}

    # Replacing the keys needs the password (user-interactive auth).
    new_master = nacl.signing.SigningKey.generate()
    replacement = {"master_key": cross_signing_key(alice, "master", new_master)}
    r = await alice.post(f"{V3}/keys/device_signing/upload", replacement)
    assert r.status == 401 and r["flows"] == [{"stages": ["m.login.password"]}]
    assert (await query(bob, {alice.user_id: []}))["master_keys"][alice.user_id]["keys"] == keys["master_key"]["keys"]
    auth = {"type": "m.login.password", "session": r["session"], "password": PASSWORD,
            "identifier": {"type": "m.id.user", "user": alice.user_id}}
    r = await alice.post(f"{V3}/keys/device_signing/upload", {**replacement, "auth": auth})
    assert r.status == 200, r
    got = (await query(bob, {alice.user_id: []}))["master_keys"][alice.user_id]
    assert got["keys"] == {f"ed25519:{public(new_master)}": public(new_master)}


async def test_cross_signing_keys_refused(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    master, other = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    bad_uploads = [
        # self-signing key not signed by the master key
        {"master_key": cross_signing_key(alice, "master", master),
         "self_signing_key": cross_signing_key(alice, "self_signing", other)},
        # signed by another key
        {"master_key": cross_signing_key(alice, "master", master),
         "self_signing_key": cross_signing_key(alice, "self_signing", other, other)},
        # wrong usage, wrong user, key id not the public key, no master key at all
        {"master_key": cross_signing_key(alice, "self_signing", master)},
        {"master_key": cross_signing_key(bob, "master", master)},
        {"master_key": {"user_id": alice.user_id, "usage": ["master"], "keys": {"ed25519:x": public(master)}}},
        {"self_signing_key": cross_signing_key(alice, "self_signing", other, master)},
    ]
    for body in bad_uploads:
        r = await alice.post(f"{V3}/keys/device_signing/upload", body)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), (body, r)
    result = await query(alice, {alice.user_id: []})
    assert result["master_keys"] == {} and result["self_signing_keys"] == {}


async def test_signatures_upload(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    device_key = await upload_device_keys(alice)
    master, self_signing, user_signing = (nacl.signing.SigningKey.generate() for _ in range(3))
    r = await alice.post(f"{V3}/keys/device_signing/upload", {
        "master_key": cross_signing_key(alice, "master", master),
        "self_signing_key": cross_signing_key(alice, "self_signing", self_signing, master),
        "user_signing_key": cross_signing_key(alice, "user_signing", user_signing, master),
    })
    assert r.status == 200, r
    bob_master = nacl.signing.SigningKey.generate()
    r = await bob.post(f"{V3}/keys/device_signing/upload",
                       {"master_key": cross_signing_key(bob, "master", bob_master)})
    assert r.status == 200, r

    stored_device = (await query(alice, {alice.user_id: []}))["device_keys"][alice.user_id][alice.device_id]
    stored_device.pop("unsigned", None)
    alice_master = (await query(alice, {alice.user_id: []}))["master_keys"][alice.user_id]
    bob_master_key = (await query(alice, {bob.user_id: []}))["master_keys"][bob.user_id]
    body = {
        alice.user_id: {
            # Her device, signed by her self-signing key; her master key, signed by her device.
            alice.device_id: sign(stored_device, alice.user_id, public(self_signing), self_signing),
            public(master): sign(alice_master, alice.user_id, alice.device_id, device_key),
        },
        # Bob's master key, signed by her user-signing key.
        bob.user_id: {public(bob_master): sign(bob_master_key, alice.user_id, public(user_signing), user_signing)},
    }
    r = await alice.post(f"{V3}/keys/signatures/upload", body)
    assert r.status == 200, r
    assert r["failures"] == {}

    seen_by_bob = await query(bob, {alice.user_id: [], bob.user_id: []})
    device_sigs = seen_by_bob["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    assert f"ed25519:{public(self_signing)}" in device_sigs
    master_sigs = seen_by_bob["master_keys"][alice.user_id]["signatures"][alice.user_id]
    assert f"ed25519:{alice.device_id}" in master_sigs
    # Alice's signature of Bob's master key is shown to Alice only.
    assert alice.user_id not in seen_by_bob["master_keys"][bob.user_id].get("signatures", {})
    seen_by_alice = await query(alice, {bob.user_id: []})
    assert f"ed25519:{public(user_signing)}" in seen_by_alice["master_keys"][bob.user_id]["signatures"][alice.user_id]

    # A bad signature, an unknown device and a key one may not sign are failures.
    forged = sign(stored_device, alice.user_id, public(self_signing), nacl.signing.SigningKey.generate())
    r = await alice.post(f"{V3}/keys/signatures/upload", {
        alice.user_id: {alice.device_id: forged, "NOPE": dict(stored_device, device_id="NOPE")},
        bob.user_id: {"BOBDEVICE": {"user_id": bob.user_id}},
    })
    assert r.status == 200, r
    failures = r["failures"]
    assert failures[alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert "NOPE" in failures[alice.user_id]
    assert "BOBDEVICE" in failures[bob.user_id]


async def test_no_key_backup(api):
    alice = await api.register("alice")
    r = await alice.get(f"{V3}/room_keys/version")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert r["error"] == "No current backup version"
