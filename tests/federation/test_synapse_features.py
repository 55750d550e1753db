"""Beyond joins and messages, with a real Synapse: relations and redactions, typing, receipts,
presence, profiles, aliases and media, each both ways.

One Synapse and one of our servers serve the whole module, and most tests share one
room (a Synapse user's, which ours joined), so the module costs two starts and one join.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import _with_database
from tests.e2e.server_process import ServerProcess
from tests.federation.interop_helpers import invited_to, our_client, register_ours, timeline_events
from tests.federation.synapse_peer import SynapseClient, SynapseError, SynapseUser

CLIENT = "/_matrix/client/v3"


@dataclass
class Pair:
    """The shared room and a user on each side, with their clients (open for the module)."""

    our_server: ServerProcess
    room_id: str
    theirs: SynapseUser
    ours: SynapseUser
    s: SynapseClient
    o: SynapseClient


@pytest.fixture(scope="module")
async def our_server(tmp_path_factory, pg_admin_dsn, database_pool):
    database = await database_pool.take()
    server = ServerProcess(tmp_path_factory.mktemp("ours"), _with_database(pg_admin_dsn, database),
                           tls=True, log_level="INFO")
    server.start()
    yield server
    server.stop()
    await database_pool.give_back(database)


@pytest.fixture(scope="module")
async def pair(synapse, our_server):
    theirs = await synapse.register("sophie")
    ours = await register_ours(our_server, "oscar")
    async with synapse.client(theirs) as s, our_client(our_server, ours) as o:
        room_id = await s.create_room(preset="private_chat", name="Features")
        await s.invite(room_id, ours.user_id)
        await o.sync_until(invited_to(room_id), timeout=60)
        await o.join(room_id)
        await s.sync_until(timeline_events(room_id, "m.room.member", membership="join"), timeout=60)
        yield Pair(our_server, room_id, theirs, ours, s, o)


def _room(room_id: str) -> str:
    return f"{CLIENT}/rooms/{quote(room_id, safe='')}"


async def _event(client: SynapseClient, room_id: str, event_id: str) -> dict:
    return await client.call("GET", f"{_room(room_id)}/event/{quote(event_id, safe='')}")


async def _sees_event(client: SynapseClient, room_id: str, event_id: str) -> dict:
    found = await client.sync_until(
        lambda sync: [e for e in timeline_events(room_id)(sync) if e["event_id"] == event_id], timeout=60)
    return found[0]


async def _relations(client: SynapseClient, room_id: str, event_id: str, rel_type: str) -> list[dict]:
    path = f"/_matrix/client/v1/rooms/{quote(room_id, safe='')}/relations/{quote(event_id, safe='')}/{rel_type}"
    return (await client.call("GET", path))["chunk"]


async def _sync_until(client: SynapseClient, predicate, since: str | None = None, timeout: float = 60):
    """(what predicate found, the next_batch of that response): long-polls /sync from since."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no /sync response matched within {timeout} s")
        response = await client.sync(since, timeout_ms=int(min(remaining, 10) * 1000) if since else 0)
        found = predicate(response)
        if found:
            return found, response["next_batch"]
        since = response["next_batch"]


def _ephemeral(room_id: str, event_type: str, match) -> Callable[[dict], list]:
    def find(sync: dict):
        room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
        return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type and match(e)]
    return find


def _presence_of(user_id: str, **content) -> Callable[[dict], list]:
    def find(sync: dict):
        return [e for e in sync.get("presence", {}).get("events", [])
                if e["sender"] == user_id and all(e["content"].get(k) == v for k, v in content.items())]
    return find


async def _relations_both_ways(author: SynapseClient, other: SynapseClient, room_id: str, label: str) -> None:
    """The author's message and its edit reach the other side; the other side's reaction,
    then its redaction, reach the author."""
    original = await author.send_text(room_id, f"{label} original")
    await _sees_event(other, room_id, original)
    edit = await author.send(room_id, "m.room.message", {
        "msgtype": "m.text", "body": f"* {label} edited",
        "m.new_content": {"msgtype": "m.text", "body": f"{label} edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    })
    seen_edit = await _sees_event(other, room_id, edit)
    assert seen_edit["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": original}
    bundled = (await _event(other, room_id, original))["unsigned"]["m.relations"]["m.replace"]
    assert bundled["event_id"] == edit

    reaction = await other.send(room_id, "m.reaction", {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "👍"}})
    seen_reaction = await _sees_event(author, room_id, reaction)
    assert seen_reaction["content"]["m.relates_to"]["key"] == "👍"
    assert [e["event_id"] for e in await _relations(author, room_id, original, "m.annotation")] == [reaction]

    redaction = (await other.call(
        "PUT", f"{_room(room_id)}/redact/{quote(reaction, safe='')}/r{secrets.token_hex(4)}",
        {"reason": "changed my mind"}))["event_id"]
    seen_redaction = await _sees_event(author, room_id, redaction)
    assert seen_redaction["redacts"] == reaction or seen_redaction["content"].get("redacts") == reaction
    redacted = await _event(author, room_id, reaction)
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["event_id"] == redaction
    assert await _relations(author, room_id, original, "m.annotation") == []


async def test_edits_reactions_and_redactions_from_synapse(pair):
    await _relations_both_ways(pair.s, pair.o, pair.room_id, "theirs")


async def test_edits_reactions_and_redactions_from_us(pair):
    await _relations_both_ways(pair.o, pair.s, pair.room_id, "ours")


async def test_typing_both_ways(pair):
    for typist, user, watcher in ((pair.o, pair.ours, pair.s), (pair.s, pair.theirs, pair.o)):
        path = f"{_room(pair.room_id)}/typing/{quote(user.user_id, safe='')}"
        await typist.call("PUT", path, {"typing": True, "timeout": 30_000})
        _, since = await _sync_until(
            watcher, _ephemeral(pair.room_id, "m.typing", lambda e: user.user_id in e["content"]["user_ids"]))
        await typist.call("PUT", path, {"typing": False})
        # From the point where they were seen typing: the stop is a change after it.
        await _sync_until(
            watcher, _ephemeral(pair.room_id, "m.typing", lambda e: user.user_id not in e["content"]["user_ids"]),
            since)


async def test_read_receipts_both_ways(pair):
    for reader, user, writer in ((pair.o, pair.ours, pair.s), (pair.s, pair.theirs, pair.o)):
        event_id = await writer.send_text(pair.room_id, f"read me, {user.user_id}")
        await _sees_event(reader, pair.room_id, event_id)
        await reader.call("POST", f"{_room(pair.room_id)}/receipt/m.read/{quote(event_id, safe='')}", {})

        def read(e: dict) -> bool:
            return user.user_id in e["content"].get(event_id, {}).get("m.read", {})

        [receipt] = await writer.sync_until(_ephemeral(pair.room_id, "m.receipt", read), timeout=60)
        assert isinstance(receipt["content"][event_id]["m.read"][user.user_id]["ts"], int)


async def test_presence_both_ways(pair):
    for setter, user, watcher, state in ((pair.o, pair.ours, pair.s, "online"),
                                         (pair.s, pair.theirs, pair.o, "unavailable")):
        status = f"{state} on {user.user_id}"
        path = f"{CLIENT}/presence/{quote(user.user_id, safe='')}/status"
        await setter.call("PUT", path, {"presence": state, "status_msg": status})
        [event] = await watcher.sync_until(_presence_of(user.user_id, status_msg=status), timeout=60)
        assert event["content"]["presence"] == state
        answer = await watcher.call("GET", path)
        assert (answer["presence"], answer["status_msg"]) == (state, status)


async def test_profiles_both_ways(pair, synapse):
    for owner, user, asker in ((pair.s, pair.theirs, pair.o), (pair.o, pair.ours, pair.s)):
        name = f"Name of {user.user_id}"
        path = f"{CLIENT}/profile/{quote(user.user_id, safe='')}"
        await owner.call("PUT", path + "/displayname", {"displayname": name})
        assert (await asker.call("GET", path))["displayname"] == name
        assert await asker.call("GET", path + "/displayname") == {"displayname": name}
    for asker, nobody in ((pair.o, synapse.user_id("nobody")), (pair.s, pair.our_server.user_id("nobody"))):
        with pytest.raises(SynapseError) as missing:
            await asker.call("GET", f"{CLIENT}/profile/{quote(nobody, safe='')}")
        assert (missing.value.status, missing.value.errcode) == (404, "M_NOT_FOUND")


async def test_aliases_resolved_and_joined_both_ways(synapse, our_server):
    theirs = await synapse.register("alicia")
    ours = await register_ours(our_server, "albert")
    async with synapse.client(theirs) as s, our_client(our_server, ours) as o:
        for owner, joiner, server_name, localpart in ((s, o, synapse.server_name, "theirs"),
                                                      (o, s, our_server.federation_name, "ours")):
            room_id = await owner.create_room(preset="public_chat", room_alias_name=localpart)
            alias = f"#{localpart}:{server_name}"
            answer = await joiner.call("GET", f"{CLIENT}/directory/room/{quote(alias, safe='')}")
            assert answer["room_id"] == room_id
            assert server_name in answer["servers"]
            assert await joiner.join(alias) == room_id
            await owner.sync_until(timeline_events(room_id, "m.room.member", membership="join"), timeout=60)
            members = await owner.call("GET", f"{_room(room_id)}/joined_members")
            assert len(members["joined"]) == 2

            missing = f"#missing:{server_name}"
            with pytest.raises(SynapseError) as not_there:
                await joiner.call("GET", f"{CLIENT}/directory/room/{quote(missing, safe='')}")
            assert (not_there.value.status, not_there.value.errcode) == (404, "M_NOT_FOUND")


async def _upload(base_url: str, user: SynapseUser, data: bytes, content_type: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url}/_matrix/media/v3/upload", data=data, params={"filename": "f.txt"},
                                headers={"Authorization": f"Bearer {user.access_token}",
                                         "Content-Type": content_type}) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["content_uri"]


async def _download(base_url: str, user: SynapseUser, mxc: str) -> tuple[int, str, bytes]:
    server_name, media_id = mxc.removeprefix("mxc://").split("/", 1)
    path = f"/_matrix/client/v1/media/download/{quote(server_name, safe='')}/{quote(media_id, safe='')}"
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + path, headers={"Authorization": f"Bearer {user.access_token}"}) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.read()


async def test_media_downloaded_through_the_other_server(pair, synapse):
    for uploader_url, uploader, downloader_url, downloader in (
        (synapse.client_url, pair.theirs, pair.our_server.base_url, pair.ours),
        (pair.our_server.base_url, pair.ours, synapse.client_url, pair.theirs),
    ):
        data = secrets.token_bytes(3000)
        mxc = await _upload(uploader_url, uploader, data, "application/octet-stream")
        status, content_type, body = await _download(downloader_url, downloader, mxc)
        assert status == 200
        assert content_type.startswith("application/octet-stream")
        assert body == data
