"""The admin media API (shaped like Synapse's /_synapse/admin) and the `homeserver media` commands."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import yaml

from homeserver import cli
from homeserver.services.clock import now_ms
from media.app_keys import MEDIA
from tests.media.media_helpers import (
    DOWNLOAD, SERVER, THUMBNAIL, download_raw, image_bytes, stored_files, upload_ok,
)

ADMIN = "/_synapse/admin/v1"
DAY = 24 * 3600 * 1000
# Timestamps in milliseconds (Synapse refuses ones that look like seconds).
JAN_2020 = 1_577_836_800_000
JAN_2025 = 1_735_689_600_000


async def make_admin(api, name: str = "root"):
    user = await api.register(name)
    # Before the token's first use, so the token cache sees the flag.
    await api.services.users.set_admin(user.user_id, True)
    return user


async def set_times(services, media_id: str, created_ts: int, last_access_ts: int | None = None) -> None:
    await services.db.execute(
        "UPDATE media SET created_ts = $2, last_access_ts = $3 WHERE media_id = $1",
        media_id, created_ts, last_access_ts,
    )


async def status_of(api, user, media_id: str, server: str = SERVER) -> int:
    status, _, _ = await download_raw(api, f"{DOWNLOAD}/{server}/{media_id}", user.access_token)
    return status


async def store_remote(api, origin: str, media_id: str, data: bytes) -> None:
    async def body():
        yield data

    await api.client.server.app[MEDIA].store_remote(origin, media_id, body(), "application/octet-stream", None)


# Access.


async def test_only_admins_may_use_the_admin_api(api):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"alice's file")
    calls = [
        ("GET", f"{ADMIN}/statistics/users/media"),
        ("GET", f"{ADMIN}/users/{alice.user_id}/media"),
        ("DELETE", f"{ADMIN}/users/{alice.user_id}/media"),
        ("GET", f"{ADMIN}/media/{SERVER}/{media_id}"),
        ("DELETE", f"{ADMIN}/media/{SERVER}/{media_id}"),
        ("POST", f"{ADMIN}/media/delete?before_ts={JAN_2025 * 2}"),
        ("POST", f"{ADMIN}/media/{SERVER}/delete?before_ts={JAN_2025 * 2}"),
        ("POST", f"{ADMIN}/purge_media_cache?before_ts={JAN_2025 * 2}"),
        ("POST", f"{ADMIN}/media/quarantine/{SERVER}/{media_id}"),
        ("POST", f"{ADMIN}/media/unquarantine/{SERVER}/{media_id}"),
    ]
    for method, path in calls:
        r = await alice.request(method, path, {} if method == "POST" else None)
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", (method, path, r)
        r = await api.request(method, path)
        assert r.status == 401 and r.errcode == "M_MISSING_TOKEN", (method, path, r)
    # Nothing was deleted or quarantined.
    assert await status_of(api, alice, media_id) == 200


# Usage statistics.


async def test_usage_per_user(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    await upload_ok(alice, b"a" * 10)
    await upload_ok(alice, b"b" * 20)
    await upload_ok(bob, b"c" * 5)
    r = await root.get(f"{ADMIN}/statistics/users/media")
    assert r.status == 200, r
    assert r.body == {
        "users": [
            {"user_id": alice.user_id, "displayname": "alice", "media_count": 2, "media_length": 30},
            {"user_id": bob.user_id, "displayname": "bob", "media_count": 1, "media_length": 5},
        ],
        "total": 2,
    }
    r = await root.get(f"{ADMIN}/statistics/users/media", params={"order_by": "media_length"})
    assert [u["user_id"] for u in r["users"]] == [bob.user_id, alice.user_id]
    r = await root.get(f"{ADMIN}/statistics/users/media", params={"order_by": "media_count", "dir": "b"})
    assert [u["user_id"] for u in r["users"]] == [alice.user_id, bob.user_id]
    r = await root.get(f"{ADMIN}/statistics/users/media", params={"search_term": "BO"})
    assert [u["user_id"] for u in r["users"]] == [bob.user_id] and r["total"] == 1


async def test_usage_pagination_and_time_window(api, services):
    root = await make_admin(api)
    users = [await api.register(f"user{i}") for i in range(3)]
    ids = [await upload_ok(u, f"file {i}".encode()) for i, u in enumerate(users)]
    await set_times(services, ids[0], JAN_2020)
    first = await root.get(f"{ADMIN}/statistics/users/media", params={"limit": "2"})
    assert len(first["users"]) == 2 and first["total"] == 3 and first["next_token"] == 2
    rest = await root.get(f"{ADMIN}/statistics/users/media", params={"limit": "2", "from": "2"})
    assert len(rest["users"]) == 1 and "next_token" not in rest.body
    seen = [u["user_id"] for u in first["users"] + rest["users"]]
    assert seen == sorted(u.user_id for u in users)
    old = await root.get(f"{ADMIN}/statistics/users/media", params={"until_ts": str(JAN_2025)})
    assert [u["user_id"] for u in old["users"]] == [users[0].user_id]
    new = await root.get(f"{ADMIN}/statistics/users/media", params={"from_ts": str(JAN_2025)})
    assert {u["user_id"] for u in new["users"]} == {users[1].user_id, users[2].user_id}


async def test_usage_bad_parameters(api):
    root = await make_admin(api)
    for params in (
        {"limit": "-1"}, {"from": "-3"}, {"limit": "ten"}, {"order_by": "size"}, {"dir": "up"},
        {"from_ts": "-1"}, {"from_ts": "200", "until_ts": "100"}, {"search_term": ""},
    ):
        r = await root.get(f"{ADMIN}/statistics/users/media", params=params)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (params, r)


# A user's media.


async def test_list_user_media(api, services):
    root = await make_admin(api)
    alice = await api.register("alice")
    small = await upload_ok(alice, b"x" * 3, "text/plain", filename="small.txt")
    large = await upload_ok(alice, b"y" * 300, "image/png")
    await set_times(services, small, JAN_2020, JAN_2025)
    r = await root.get(f"{ADMIN}/users/{alice.user_id}/media")
    assert r.status == 200, r
    assert r["total"] == 2 and "next_token" not in r.body
    assert [m["media_id"] for m in r["media"]] == [large, small]  # newest first
    assert r["media"][1] == {
        "media_id": small, "created_ts": JAN_2020, "last_access_ts": JAN_2025, "media_length": 3,
        "media_type": "text/plain", "upload_name": "small.txt", "quarantined_by": None,
        "safe_from_quarantine": False,
    }
    r = await root.get(f"{ADMIN}/users/{alice.user_id}/media", params={"order_by": "media_length"})
    assert [m["media_id"] for m in r["media"]] == [small, large]
    r = await root.get(f"{ADMIN}/users/{alice.user_id}/media", params={"limit": "1"})
    assert [m["media_id"] for m in r["media"]] == [large] and r["next_token"] == 1


async def test_list_user_media_bad_users(api):
    root = await make_admin(api)
    r = await root.get(f"{ADMIN}/users/@nobody:{SERVER}/media")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await root.get(f"{ADMIN}/users/@someone:elsewhere.org/media")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await root.get(f"{ADMIN}/users/not-a-user-id/media")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await root.get(f"{ADMIN}/users/@root:{SERVER}/media", params={"order_by": "colour"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_delete_user_media(api, services):
    root = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    mine = [await upload_ok(alice, f"alice {i}".encode()) for i in range(3)]
    kept = await upload_ok(bob, b"bob's")
    r = await root.delete(f"{ADMIN}/users/{alice.user_id}/media")
    assert r.status == 200, r
    assert sorted(r["deleted_media"]) == sorted(mine) and r["total"] == 3
    for media_id in mine:
        assert await status_of(api, alice, media_id) == 404
    assert await status_of(api, bob, kept) == 200
    assert [p.read_bytes() for p in stored_files(services)] == [b"bob's"]


# Media by id.


async def test_media_info(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    data = b"some bytes"
    media_id = await upload_ok(alice, data, "text/plain", filename="notes.txt")
    r = await root.get(f"{ADMIN}/media/{SERVER}/{media_id}")
    assert r.status == 200, r
    info = r["media_info"]
    assert (info["media_origin"], info["user_id"], info["media_id"]) == (SERVER, alice.user_id, media_id)
    assert (info["media_type"], info["media_length"], info["upload_name"]) == ("text/plain", len(data), "notes.txt")
    assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["quarantined_by"] is None
    r = await root.get(f"{ADMIN}/media/{SERVER}/doesnotexist")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_delete_one_media_item(api, services):
    root = await make_admin(api)
    alice = await api.register("alice")
    image = image_bytes(400, 300)
    media_id = await upload_ok(alice, image, "image/jpeg")
    copy = await upload_ok(alice, b"other bytes")
    thumb = f"{THUMBNAIL}/{SERVER}/{media_id}?width=32&height=32&method=crop"
    assert (await download_raw(api, thumb, alice.access_token))[0] == 200
    assert len(stored_files(services)) > 2  # the image, its thumbnails, the other file

    r = await root.delete(f"{ADMIN}/media/{SERVER}/{media_id}")
    assert r.status == 200, r
    assert r.body == {"deleted_media": [media_id], "total": 1}
    assert await status_of(api, alice, media_id) == 404
    status, body, _ = await download_raw(api, thumb, alice.access_token)
    assert status == 404
    # The image and its thumbnails are gone from disk; the other upload is not.
    assert [p.read_bytes() for p in stored_files(services)] == [b"other bytes"]
    assert await status_of(api, alice, copy) == 200

    r = await root.delete(f"{ADMIN}/media/{SERVER}/{media_id}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await root.delete(f"{ADMIN}/media/other.server/{copy}")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await root.delete(f"{ADMIN}/media/{SERVER}/..%2F..%2Fsigning.key")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_deleting_one_of_two_identical_uploads_keeps_the_file(api, services):
    root = await make_admin(api)
    alice = await api.register("alice")
    first = await upload_ok(alice, b"shared bytes")
    second = await upload_ok(alice, b"shared bytes")
    assert (await root.delete(f"{ADMIN}/media/{SERVER}/{first}")).status == 200
    assert await status_of(api, alice, first) == 404
    status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{second}", alice.access_token)
    assert (status, body) == (200, b"shared bytes")
    assert len(stored_files(services)) == 1


# Purges.


async def test_purge_local_media_by_last_use(api, services):
    root = await make_admin(api)
    alice = await api.register("alice")
    old_unused = await upload_ok(alice, b"old, never downloaded")
    old_used = await upload_ok(alice, b"old, downloaded lately")
    recent = await upload_ok(alice, b"uploaded recently")
    await set_times(services, old_unused, JAN_2020)
    await set_times(services, old_used, JAN_2020, JAN_2025 + DAY)
    await set_times(services, recent, JAN_2025 + DAY)
    r = await root.post(f"{ADMIN}/media/delete?before_ts={JAN_2025}")
    assert r.status == 200, r
    assert r.body == {"deleted_media": [old_unused], "total": 1}
    assert await status_of(api, alice, old_unused) == 404
    assert await status_of(api, alice, old_used) == 200
    assert await status_of(api, alice, recent) == 200
    # The deprecated form with the server name; the downloads just now count as use.
    r = await root.post(f"{ADMIN}/media/{SERVER}/delete?before_ts={now_ms() + DAY}")
    assert r.status == 200 and sorted(r["deleted_media"]) == sorted([old_used, recent]), r


async def test_purge_size_and_avatars(api, services):
    root = await make_admin(api)
    alice = await api.register("alice")
    small = await upload_ok(alice, b"s")
    big = await upload_ok(alice, b"b" * 100)
    avatar = await upload_ok(alice, b"a" * 100, "image/png")
    room_avatar = await upload_ok(alice, b"r" * 100, "image/png")
    for media_id in (small, big, avatar, room_avatar):
        await set_times(services, media_id, JAN_2020)
    r = await alice.put(f"/_matrix/client/v3/profile/{alice.user_id}/avatar_url",
                        {"avatar_url": f"mxc://{SERVER}/{avatar}"})
    assert r.status == 200, r
    room = await alice.create_room()
    r = await alice.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.avatar/", {"url": f"mxc://{SERVER}/{room_avatar}"})
    assert r.status == 200, r

    r = await root.post(f"{ADMIN}/media/delete?before_ts={JAN_2025}&size_gt=10")
    assert r.body == {"deleted_media": [big], "total": 1}, r
    r = await root.post(f"{ADMIN}/media/delete?before_ts={JAN_2025}&keep_profiles=false")
    assert sorted(r["deleted_media"]) == sorted([small, avatar, room_avatar]), r


async def test_purge_bad_parameters(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"still here")
    r = await root.post(f"{ADMIN}/media/delete")
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    for query in ("before_ts=yesterday", "before_ts=-1", "before_ts=1700000000",
                  f"before_ts={JAN_2025}&size_gt=-5", f"before_ts={JAN_2025}&keep_profiles=maybe"):
        r = await root.post(f"{ADMIN}/media/delete?{query}")
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (query, r)
    r = await root.post(f"{ADMIN}/media/other.server/delete?before_ts={JAN_2025 * 2}")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await root.post(f"{ADMIN}/purge_media_cache")
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    assert await status_of(api, alice, media_id) == 200


# Federation off: what is not cached here cannot be fetched, so it is not found.
@pytest.mark.parametrize("config_overrides", [{"federation": {"enabled": False}}])
async def test_purge_remote_media_cache(api, services):
    root = await make_admin(api)
    alice = await api.register("alice")
    local = await upload_ok(alice, b"local upload")
    await set_times(services, local, JAN_2020)
    await store_remote(api, "remote.example", "oldremote", b"cached long ago")
    await store_remote(api, "remote.example", "newremote", b"cached lately")
    await services.db.execute(
        "UPDATE remote_media SET fetched_ts = $1 WHERE media_id = 'oldremote'", JAN_2020)
    await services.db.execute(
        "UPDATE remote_media SET fetched_ts = $1 WHERE media_id = 'newremote'", JAN_2025 + DAY)
    assert await status_of(api, alice, "oldremote", "remote.example") == 200
    await services.db.execute(
        "UPDATE remote_media SET last_access_ts = NULL WHERE media_id = 'oldremote'")

    r = await root.post(f"{ADMIN}/purge_media_cache?before_ts={JAN_2025}")
    assert r.status == 200 and r.body == {"deleted": 1}, r
    assert await status_of(api, alice, "oldremote", "remote.example") == 404
    assert await status_of(api, alice, "newremote", "remote.example") == 200
    # Local media is not the remote cache.
    assert await status_of(api, alice, local) == 200
    assert sorted(p.read_bytes() for p in stored_files(services)) == [b"cached lately", b"local upload"]


# Quarantine.


async def test_quarantine_and_release(api, services):
    root = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    image = image_bytes(200, 100)
    media_id = await upload_ok(alice, image, "image/jpeg")
    same_bytes = await upload_ok(bob, image, "image/jpeg")
    other = await upload_ok(bob, b"unrelated")
    thumb = f"{THUMBNAIL}/{SERVER}/{media_id}?width=32&height=32&method=crop"

    r = await root.post(f"{ADMIN}/media/quarantine/{SERVER}/{media_id}", {})
    assert r.status == 200 and r.body == {}, r
    assert await status_of(api, alice, media_id) == 404
    assert await status_of(api, bob, same_bytes) == 404  # the same content under another id
    assert (await download_raw(api, thumb, alice.access_token))[0] == 404
    assert await status_of(api, bob, other) == 200
    info = (await root.get(f"{ADMIN}/media/{SERVER}/{media_id}"))["media_info"]
    assert info["quarantined_by"] == root.user_id
    listed = await root.get(f"{ADMIN}/users/{alice.user_id}/media")
    assert listed["media"][0]["quarantined_by"] == root.user_id
    # The file stays on disk while quarantined.
    assert hashlib.sha256(image).hexdigest() in [p.name for p in stored_files(services)]

    r = await root.post(f"{ADMIN}/media/unquarantine/{SERVER}/{media_id}", {})
    assert r.status == 200 and r.body == {}, r
    status, body, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", alice.access_token)
    assert (status, body) == (200, image)
    assert await status_of(api, bob, same_bytes) == 200


async def test_same_bytes_uploaded_again_stay_quarantined(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    media_id = await upload_ok(alice, b"known bad bytes")
    assert (await root.post(f"{ADMIN}/media/quarantine/{SERVER}/{media_id}", {})).status == 200
    again = await upload_ok(bob, b"known bad bytes")
    assert await status_of(api, bob, again) == 404
    # Also through an async upload (create, then PUT).
    r = await bob.post("/_matrix/media/v1/create", {})
    assert r.status == 200, r
    later = r["content_uri"].rsplit("/", 1)[1]
    r = await bob.put(f"/_matrix/media/v3/upload/{SERVER}/{later}", raw=b"known bad bytes",
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert await status_of(api, bob, later) == 404
    await store_remote(api, "remote.example", "remotecopy", b"known bad bytes")
    assert await status_of(api, bob, "remotecopy", "remote.example") == 404
    # Other bytes are not affected.
    assert await status_of(api, bob, await upload_ok(bob, b"harmless")) == 200


async def test_quarantine_remote_and_unknown_media(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    await store_remote(api, "remote.example", "remoteid", b"remote bytes")
    r = await root.post(f"{ADMIN}/media/quarantine/remote.example/remoteid", {})
    assert r.status == 200, r
    assert await status_of(api, alice, "remoteid", "remote.example") == 404
    r = await root.post(f"{ADMIN}/media/quarantine/{SERVER}/unknownid", {})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await root.post(f"{ADMIN}/media/quarantine/remote.example/unknownid", {})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


# The `homeserver media` commands.


async def run_cli(services, tmp_path, *args: str) -> int:
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump({
        "server_name": services.config.server_name,
        "data_dir": str(services.config.data_dir),
        "database": services.config.database,
        "password_hash_rounds": 4,
    }))
    # The command runs its own event loop, as from a shell.
    return await asyncio.to_thread(cli.main, ["-c", str(config_path), "media", *args])


async def test_cli_usage_list_and_delete(api, services, tmp_path, capsys):
    alice = await api.register("alice")
    kept = await upload_ok(alice, b"k" * 2048, "text/plain", filename="kept.txt")
    doomed = await upload_ok(alice, b"d" * 10)
    assert await run_cli(services, tmp_path, "usage") == 0
    out = capsys.readouterr().out
    assert f"{alice.user_id}\t2 files\t2.0 KiB" in out
    assert await run_cli(services, tmp_path, "list", alice.user_id) == 0
    out = capsys.readouterr().out
    assert f"mxc://{SERVER}/{kept}" in out and "kept.txt" in out and f"mxc://{SERVER}/{doomed}" in out

    assert await run_cli(services, tmp_path, "delete", f"mxc://{SERVER}/{doomed}") == 0
    assert await status_of(api, alice, doomed) == 404
    assert await status_of(api, alice, kept) == 200
    assert await run_cli(services, tmp_path, "delete", f"mxc://{SERVER}/{doomed}") == 1
    assert await run_cli(services, tmp_path, "delete", "https://example.org/x") == 1
    assert await run_cli(services, tmp_path, "list", "@nobody:test.local") == 1


async def test_cli_purge(api, services, tmp_path, capsys):
    alice = await api.register("alice")
    old = await upload_ok(alice, b"uploaded in 2019")
    old_but_used = await upload_ok(alice, b"uploaded in 2019, downloaded in 2025")
    new = await upload_ok(alice, b"uploaded now")
    await set_times(services, old, JAN_2020 - DAY)
    await set_times(services, old_but_used, JAN_2020 - DAY, JAN_2025)

    assert await run_cli(services, tmp_path, "purge", "--not-accessed-since", "2020-01-01", "--dry-run") == 0
    assert capsys.readouterr().out.split() == [f"mxc://{SERVER}/{old}"]
    # (Not downloaded to check: that would count as a use.)
    assert await services.db.fetchval("SELECT count(*) FROM media WHERE media_id = $1", old) == 1

    assert await run_cli(services, tmp_path, "purge", "--not-accessed-since", "2020-01-01") == 0
    assert await status_of(api, alice, old) == 404
    assert await status_of(api, alice, old_but_used) == 200
    assert await run_cli(services, tmp_path, "purge", "--before", "2020-01-01") == 0
    assert await status_of(api, alice, old_but_used) == 404
    assert await status_of(api, alice, new) == 200


async def test_cli_quarantine(api, services, tmp_path):
    alice = await api.register("alice")
    media_id = await upload_ok(alice, b"questionable")
    uri = f"mxc://{SERVER}/{media_id}"
    assert await run_cli(services, tmp_path, "quarantine", uri) == 0
    assert await status_of(api, alice, media_id) == 404
    assert await run_cli(services, tmp_path, "unquarantine", uri) == 0
    assert await status_of(api, alice, media_id) == 200


@pytest.mark.parametrize("bad", ["yesterday", "2020-13-01"])
def test_cli_rejects_bad_dates(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["media", "purge", "--before", bad])
    assert exit_info.value.code == 2
    assert "not a date" in capsys.readouterr().err
