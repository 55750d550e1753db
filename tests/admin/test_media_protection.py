"""Media protection: Synapse's media_admin_api.md, "Protecting media from being quarantined".
Protected local media is not quarantined (Synapse's quarantine by id skips it too and
answers {} all the same) and is kept by the deletion of old media (POST /media/delete)."""

from __future__ import annotations

from tests.admin.helpers import V1, assert_admin_only, make_admin
from tests.media.media_helpers import DOWNLOAD, SERVER, download_raw, upload_ok

JAN_2020 = 1_577_836_800_000
JAN_2025 = 1_735_689_600_000


async def _make_old(api, *media_ids):
    await api.services.db.execute(
        "UPDATE media SET created_ts = $2, last_access_ts = NULL WHERE media_id = ANY($1::text[])",
        list(media_ids), JAN_2020,
    )


async def _download_status(api, user, media_id):
    status, _, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", user.access_token)
    return status


async def test_protect_is_admin_only(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"a sticker")
    for path in (f"{V1}/media/protect/{media_id}", f"{V1}/media/unprotect/{media_id}"):
        await assert_admin_only(api, "POST", path, {}, user=alice)
    assert await api.services.db.fetchval("SELECT count(*) FROM media_protected") == 0


async def test_protect_round_trip_and_its_effect_on_the_deletion_of_old_media(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    sticker = await upload_ok(alice, b"a sticker everybody uses")
    junk = await upload_ok(alice, b"old junk")

    r = await admin.post(f"{V1}/media/protect/{sticker}", {})
    assert r.status == 200 and r.body == {}, r
    r = await admin.get(f"{V1}/media/{SERVER}/{sticker}")
    assert r["media_info"]["safe_from_quarantine"] is True, r
    assert (await admin.get(f"{V1}/media/{SERVER}/{junk}"))["media_info"]["safe_from_quarantine"] is False
    listed = {m["media_id"]: m["safe_from_quarantine"] for m in (await admin.get(f"{V1}/users/{alice.user_id}/media"))["media"]}
    assert listed == {sticker: True, junk: False}

    # Deleting old media keeps the protected item.
    await _make_old(api, sticker, junk)
    r = await admin.post(f"{V1}/media/delete?before_ts={JAN_2025}")
    assert r.status == 200 and r.body == {"deleted_media": [junk], "total": 1}, r
    assert await _download_status(api, alice, sticker) == 200
    assert await _download_status(api, alice, junk) == 404

    # Quarantining it is answered as usual and does nothing.
    r = await admin.post(f"{V1}/media/quarantine/{SERVER}/{sticker}", {})
    assert r.status == 200 and r.body == {}, r
    assert await _download_status(api, alice, sticker) == 200
    assert (await admin.get(f"{V1}/media/{SERVER}/{sticker}"))["media_info"]["quarantined_by"] is None

    # Unprotected, it is deleted like any other.
    r = await admin.post(f"{V1}/media/unprotect/{sticker}", {})
    assert r.status == 200 and r.body == {}, r
    assert (await admin.get(f"{V1}/media/{SERVER}/{sticker}"))["media_info"]["safe_from_quarantine"] is False
    assert (await admin.post(f"{V1}/media/quarantine/{SERVER}/{sticker}", {})).status == 200
    assert await _download_status(api, alice, sticker) == 404
    assert (await admin.post(f"{V1}/media/unquarantine/{SERVER}/{sticker}", {})).status == 200
    await _make_old(api, sticker)
    r = await admin.post(f"{V1}/media/delete?before_ts={JAN_2025}")
    assert r.body == {"deleted_media": [sticker], "total": 1}, r

    # Protected media can still be deleted by id; its protection goes with it.
    other = await upload_ok(alice, b"another sticker")
    assert (await admin.post(f"{V1}/media/protect/{other}", {})).status == 200
    assert (await admin.post(f"{V1}/media/protect/{other}", {})).status == 200  # twice is once
    assert (await admin.delete(f"{V1}/media/{SERVER}/{other}")).status == 200
    assert await api.services.db.fetchval("SELECT count(*) FROM media_protected") == 0


async def test_protect_unknown_media(api):
    admin = await make_admin(api)
    for path in (f"{V1}/media/protect/nosuchmedia", f"{V1}/media/unprotect/nosuchmedia",
                 f"{V1}/media/protect/bad%20id"):
        r = await admin.post(path, {})
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", (path, r)


async def test_quarantine_of_a_users_media_skips_protected_media(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    sticker = await upload_ok(alice, b"alice's sticker pack")
    spam = [await upload_ok(alice, f"spam {i}".encode()) for i in range(2)]
    bobs = await upload_ok(bob, b"bob's photo")
    path = f"{V1}/user/{alice.user_id}/media/quarantine"
    await assert_admin_only(api, "POST", path, {}, user=bob)
    assert (await admin.post(f"{V1}/media/protect/{sticker}", {})).status == 200

    r = await admin.post(path, {})
    assert r.status == 200 and r.body == {"num_quarantined": 2}, r
    for media_id in spam:
        assert await _download_status(api, alice, media_id) == 404
    assert await _download_status(api, alice, sticker) == 200
    assert await _download_status(api, bob, bobs) == 200
    # Again: nothing is left to quarantine.
    assert (await admin.post(path, {})).body == {"num_quarantined": 0}
    for user_id, status in (("@nobody:test.local", 404), ("@x:elsewhere.example", 400), ("not-a-user", 400)):
        r = await admin.post(f"{V1}/user/{user_id}/media/quarantine", {})
        assert r.status == status, (user_id, r)


async def test_quarantine_of_the_same_bytes_leaves_a_protected_copy(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    kept = await upload_ok(alice, b"the same bytes")
    copy = await upload_ok(bob, b"the same bytes")
    assert (await admin.post(f"{V1}/media/protect/{kept}", {})).status == 200
    r = await admin.post(f"{V1}/media/quarantine/{SERVER}/{copy}", {})
    assert r.status == 200, r
    assert await _download_status(api, bob, copy) == 404
    assert await _download_status(api, alice, kept) == 200
    # Sorted by protection: the protected item first when descending, last when ascending.
    other = await upload_ok(alice, b"other bytes")
    for direction, order in (("b", [kept, other]), ("f", [other, kept])):
        r = await admin.get(f"/_synapse/admin/v1/users/{alice.user_id}/media",
                            params={"order_by": "safe_from_quarantine", "dir": direction})
        assert r.status == 200 and [m["media_id"] for m in r["media"]] == order, r
