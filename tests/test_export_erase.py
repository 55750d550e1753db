"""A user's data: `homeserver export-data` writes it all in the layout of docs/your-data.md;
erasure (deactivate with erase, `homeserver erase-user`) redacts their messages for
everyone and removes their profile, devices and media."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import aiohttp
import nacl.signing
import yaml

from homeserver import cli
from tests.benchmarks.bench_messaging import Client
from tests.client.e2e_helpers import cross_signing_key, query, upload_device_keys
from tests.e2e.server_process import ServerProcess
from tests.helpers import Api, User
from tests.media.media_helpers import DOWNLOAD, SERVER, download_raw, upload_ok

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery"
PICTURE = b"\x89PNG not really, but the bytes of alice's upload \x00\x01\x02" * 50


def _config_file(api: Api, tmp_path: Path) -> Path:
    """A configuration for the command line: the test server's database and data directory."""
    config = api.services.config
    path = tmp_path / "homeserver.yaml"
    path.write_text(yaml.safe_dump({
        "server_name": config.server_name, "data_dir": str(config.data_dir),
        "database": config.database_dsn, "password_hash_rounds": 4,
    }))
    return path


async def _cli(*argv: str) -> int:
    # The command runs its own event loop, as from a shell: in a thread beside the test's.
    return await asyncio.to_thread(cli.main, list(argv))


async def _conversation(api: Api) -> tuple[User, User, str, list[str], str]:
    alice = await api.register("alice", PASSWORD)
    bob = await api.register("bob", PASSWORD)
    assert (await alice.put(f"{V3}/profile/{alice.user_id}/displayname", {"displayname": "Alice A."})).status == 200
    media_id = await upload_ok(alice, PICTURE, "image/png", filename="me.png")
    avatar = f"mxc://{SERVER}/{media_id}"
    assert (await alice.put(f"{V3}/profile/{alice.user_id}/avatar_url", {"avatar_url": avatar})).status == 200
    assert (await alice.put(f"{V3}/user/{alice.user_id}/account_data/org.example.settings",
                            {"theme": "dark"})).status == 200
    room = await alice.create_room(name="Family", invite=[bob.user_id])
    await bob.join(room)
    assert (await alice.put(f"{V3}/user/{alice.user_id}/rooms/{room}/account_data/org.example.pinned",
                            {"pinned": True})).status == 200
    sent = [await alice.send_text(room, "hello bob"), await alice.send_text(room, "my secret recipe")]
    await bob.send_text(room, "hi alice")
    sent.append(await alice.send_text(room, "bye"))
    return alice, bob, room, sent, media_id


async def test_export_data_writes_the_documented_layout(api: Api, tmp_path: Path):
    alice, bob, room, sent, media_id = await _conversation(api)
    out = tmp_path / "alice-export"
    assert await _cli("-c", str(_config_file(api, tmp_path)), "export-data", alice.user_id, str(out)) == 0

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["user_id"] == alice.user_id and manifest["version"] == 1
    assert json.loads((out / "profile.json").read_text()) == {
        "displayname": "Alice A.", "avatar_url": f"mxc://{SERVER}/{media_id}"}
    account_data = json.loads((out / "account_data.json").read_text())
    assert account_data["global"]["org.example.settings"] == {"theme": "dark"}
    assert account_data["rooms"][room]["org.example.pinned"] == {"pinned": True}
    devices = json.loads((out / "devices.json").read_text())
    assert [d["device_id"] for d in devices] == [alice.device_id]

    rooms = json.loads((out / "rooms.json").read_text())
    assert [(r["room_id"], r["membership"]) for r in rooms] == [(room, "join")]
    assert rooms[0]["events_file"] == f"rooms/{quote(room, safe='')}.jsonl"
    lines = (out / rooms[0]["events_file"]).read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert rooms[0]["event_count"] == len(events)
    # The client format (as /messages serves it), in order, both sides of the conversation.
    bodies = [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
    assert bodies == ["hello bob", "my secret recipe", "hi alice", "bye"]
    assert [e["event_id"] for e in events if e["type"] == "m.room.message" and e["sender"] == alice.user_id] == sent
    assert {"event_id", "sender", "origin_server_ts", "content", "type", "room_id"} <= set(events[-1])
    assert events[0]["type"] == "m.room.create"

    media = json.loads((out / "media.json").read_text())
    assert [(m["media_id"], m["content_type"], m["upload_name"]) for m in media] == [(media_id, "image/png", "me.png")]
    assert (out / media[0]["file"]).read_bytes() == PICTURE

    # No secret of the account anywhere in the export.
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file() and p.parent.name != "media")
    assert alice.access_token.encode() not in everything
    assert b"password" not in everything and b"$2b$" not in everything

    # A second export into the same, now full, folder is refused.
    assert await _cli("-c", str(_config_file(api, tmp_path)), "export-data", alice.user_id, str(out)) == 1


async def test_erase_redacts_for_everyone_and_removes_the_account_data(api: Api, tmp_path: Path):
    alice, bob, room, sent, media_id = await _conversation(api)
    await upload_device_keys(alice)
    master = nacl.signing.SigningKey.generate()
    r = await alice.post(f"{V3}/keys/device_signing/upload",
                         {"master_key": cross_signing_key(alice, "master", master)})
    assert r.status == 200, r
    assert alice.user_id in (await query(bob, {alice.user_id: []}))["master_keys"]
    since = (await bob.sync())["next_batch"]

    r = await alice.post(f"{V3}/account/deactivate", {"auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD}, "erase": True})
    assert r.status == 200, r

    # Bob's /messages shows alice's messages redacted, his own as they were.
    page = await bob.get(f"{V3}/rooms/{room}/messages", params={"dir": "b", "limit": "100"})
    assert page.status == 200, page
    by_id = {e["event_id"]: e for e in page["chunk"]}
    for event_id in sent:
        assert by_id[event_id]["content"] == {}, by_id[event_id]
        assert by_id[event_id]["unsigned"]["redacted_because"]["sender"] == alice.user_id
    assert [e["content"]["body"] for e in page["chunk"]
            if e["type"] == "m.room.message" and e["sender"] == bob.user_id] == ["hi alice"]
    # No display name or avatar left in the room's member events of her.
    for event in page["chunk"]:
        if event["type"] == "m.room.member" and event["state_key"] == alice.user_id:
            assert "displayname" not in event["content"] and "avatar_url" not in event["content"], event
    # Bob's next /sync brings the redactions and her leave.
    timeline = (await bob.sync(since=since))["rooms"]["join"][room]["timeline"]["events"]
    assert {e["redacts"] for e in timeline if e["type"] == "m.room.redaction"} >= set(sent)
    assert any(e["type"] == "m.room.member" and e["state_key"] == alice.user_id
               and e["content"]["membership"] == "leave" for e in timeline)

    # Profile, devices and login are gone; her upload answers 404.
    profile = await api.request("GET", f"{V3}/profile/{alice.user_id}")
    assert "displayname" not in (profile.body or {}) and "avatar_url" not in (profile.body or {})
    assert await api.services.devices.list_devices(alice.user_id) == []
    assert (await api.login("alice", PASSWORD)).status == 403
    status, _, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", token=bob.access_token)
    assert status == 404
    assert not list((Path(api.services.config.data_dir) / "media" / "content").rglob("*" * 1 + "?" * 63))
    # Her keys are gone: nobody can encrypt to a device or trust a key of hers.
    keys = await query(bob, {alice.user_id: []})
    assert keys["device_keys"].get(alice.user_id, {}) == {} and alice.user_id not in keys["master_keys"]
    # Her private account data holds nothing any more.
    assert await api.services.account_data.store.get(alice.user_id, "", "org.example.settings") in (None, {})

    assert await api.services.erasure.is_erased(alice.user_id)
    assert not await api.services.erasure.is_erased(bob.user_id)

    # Erasing again (from the command line) finds nothing left to do and succeeds.
    assert await _cli("-c", str(_config_file(api, tmp_path)), "erase-user", alice.user_id, "--yes") == 0
    again = await bob.get(f"{V3}/rooms/{room}/messages", params={"dir": "b", "limit": "100"})
    assert len([e for e in again["chunk"] if e["type"] == "m.room.redaction"]) == len(
        [e for e in page["chunk"] if e["type"] == "m.room.redaction"])


async def test_erase_user_command_refuses_unknown_and_remote_users(api: Api, tmp_path: Path):
    config = str(_config_file(api, tmp_path))
    assert await _cli("-c", config, "erase-user", f"@nobody:{SERVER}", "--yes") == 1
    assert await _cli("-c", config, "erase-user", "@someone:elsewhere.example", "--yes") == 1


async def test_erasure_interrupted_midway_is_finished_by_a_rerun(api: Api):
    alice, bob, room, sent, media_id = await _conversation(api)
    erasure = api.services.erasure
    real_deleter = erasure.media_deleter

    class CrashOnce:
        """The process dies when the erasure reaches the media (after the redactions)."""

        async def delete_local(self, media_id: str) -> bool:
            raise RuntimeError("killed")

    erasure.media_deleter = CrashOnce()
    try:
        await erasure.erase_user(alice.user_id)
    except RuntimeError:
        pass
    finally:
        erasure.media_deleter = real_deleter
    assert (await api.login("alice", PASSWORD)).status == 403
    assert await erasure.is_erased(alice.user_id)
    status, _, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", token=bob.access_token)
    assert status == 200  # not reached yet

    done = await erasure.erase_user(alice.user_id)
    assert done["redacted_events"] == 0 and done["deleted_media"] == 1
    status, _, _ = await download_raw(api, f"{DOWNLOAD}/{SERVER}/{media_id}", token=bob.access_token)
    assert status == 404
    page = await bob.get(f"{V3}/rooms/{room}/messages", params={"dir": "b", "limit": "100"})
    redactions = [e for e in page["chunk"] if e["type"] == "m.room.redaction"]
    # Each message redacted once, and the old member events that named her.
    assert {e["redacts"] for e in redactions} >= set(sent)
    assert len(redactions) == len({e["redacts"] for e in redactions})
    assert await erasure.erase_user(alice.user_id) == {"rooms": 0, "redacted_events": 0, "deleted_media": 0}


async def test_messages_in_rooms_left_before_the_erasure_are_served_pruned(api: Api):
    """Erased users can no longer redact in rooms they left: the server serves those
    messages pruned instead, to every client, and keeps state events intact."""
    alice = await api.register("alice", PASSWORD)
    bob = await api.register("bob", PASSWORD)
    room = await alice.create_room(preset="public_chat",
                                   power_level_content_override={"events": {"m.room.topic": 0}})
    await bob.join(room)
    secret = await bob.send_text(room, "my old secret")
    r = await bob.put(f"{V3}/rooms/{room}/state/m.room.topic", {"topic": "bob's topic"})
    assert r.status == 200
    before = await alice.get(f"{V3}/rooms/{room}/event/{secret}")
    assert before["content"]["body"] == "my old secret"  # and now in the server's event cache
    assert (await bob.post(f"{V3}/rooms/{room}/leave", {})).status == 200
    await api.services.erasure.erase_user(bob.user_id)

    page = await alice.get(f"{V3}/rooms/{room}/messages", params={"dir": "b", "limit": "50"})
    by_id = {e["event_id"]: e for e in page["chunk"]}
    assert by_id[secret]["content"] == {}
    assert (await alice.get(f"{V3}/rooms/{room}/event/{secret}"))["content"] == {}
    bob_members = [e for e in page["chunk"] if e["type"] == "m.room.member" and e["sender"] == bob.user_id]
    assert bob_members and all(set(e["content"]) <= {"membership"} for e in bob_members)
    # State they set stays what the room shows.
    topic = await alice.get(f"{V3}/rooms/{room}/state/m.room.topic")
    assert topic["topic"] == "bob's topic"
    # Alice's own messages are untouched.
    mine = await alice.send_text(room, "still here")
    assert (await alice.get(f"{V3}/rooms/{room}/event/{mine}"))["content"]["body"] == "still here"


async def test_erase_user_from_the_shell_beside_the_running_server(tmp_path: Path, monkeypatch):
    """docs/your-data.md: the command joins the running server's processes (here on the
    embedded database, which they share), so the server serves at once, pruned, the
    message it had cached of a room the user left; no restart."""
    monkeypatch.delenv("HOMESERVER_DATABASE", raising=False)
    server = ServerProcess(tmp_path / "server", None, server_name="erase.local")
    server.start(timeout=180)
    try:
        async with aiohttp.ClientSession() as session:
            alice = await Client(session, server.base_url).register("alice")
            bob = await Client(session, server.base_url).register("bob")
            room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
            await bob.call("POST", f"/join/{room}", {})
            secret = await bob.send(room, "my old secret")
            cached = await alice.call("GET", f"/rooms/{room}/event/{secret}")
            assert cached["content"]["body"] == "my old secret"
            await bob.call("POST", f"/rooms/{room}/leave", {})
            done = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "homeserver.cli", "-c", str(server.config_path),
                "erase-user", bob.user_id, "--yes"], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0 and f"erased {bob.user_id}" in done.stdout, done.stderr
            # The command has ended; its notifications went out before it did (the server
            # reads them from its own connection: a moment to be sure it has).
            for _ in range(50):
                content = (await alice.call("GET", f"/rooms/{room}/event/{secret}"))["content"]
                if content == {}:
                    break
                await asyncio.sleep(0.1)
            assert content == {}
    finally:
        server.stop()
