"""Simplified sliding sync against the server process, scripted as Element X drives it.

No Python client library speaks MSC4186, so the requests follow the shapes that
matrix-rust-sdk (Element X) sends: a "room-list" connection with an all-rooms
list and an invites list, and an "encryption" connection with only the
to_device and e2ee extensions, each long-polling with its last pos.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
REQUIRED_STATE = [
    ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.name", ""],
    ["m.room.canonical_alias", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""],
    ["m.room.topic", ""], ["m.room.avatar", ""], ["m.room.create", ""], ["m.room.tombstone", ""],
    ["m.room.history_visibility", ""], ["org.matrix.msc3401.call.member", "*"],
]


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, token: str, user_id: str, device_id: str):
        self.session, self.base, self.token, self.user_id, self.device_id = session, base, token, user_id, device_id

    async def call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body, params=params,
                                        headers={"Authorization": f"Bearer {self.token}"}) as resp:
            return resp.status, json.loads(await resp.text())

    async def ok(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        status, answer = await self.call(method, path, body, params)
        assert status == 200, (path, answer)
        return answer

    async def room_list(self, pos: str | None = None, timeout: int = 0, end: int = 19) -> tuple[int, Any]:
        body = {
            "conn_id": "room-list",
            "lists": {
                "all_rooms": {"ranges": [[0, end]], "required_state": REQUIRED_STATE, "timeline_limit": 1,
                              "filters": {"not_room_types": ["m.space"]}, "include_heroes": True},
                "invites": {"ranges": [[0, 19]], "required_state": REQUIRED_STATE, "timeline_limit": 1,
                            "filters": {"is_invite": True}},
            },
            "extensions": {"account_data": {"enabled": True}, "receipts": {"enabled": True, "rooms": ["*"]},
                           "typing": {"enabled": True}},
        }
        params = {"timeout": str(timeout), **({"pos": pos} if pos else {})}
        return await self.call("POST", SS, body, params)

    async def encryption(self, pos: str | None, since: str | None, timeout: int = 0) -> Any:
        body = {"conn_id": "encryption", "extensions": {
            "to_device": {"enabled": True, **({"since": since} if since else {})}, "e2ee": {"enabled": True}}}
        return await self.ok("POST", SS, body, {"timeout": str(timeout), **({"pos": pos} if pos else {})})


async def _register(session: aiohttp.ClientSession, base: str, name: str) -> Client:
    async with session.post(base + "/_matrix/client/v3/register", json={
            "username": name, "password": "a strong password", "auth": {"type": "m.login.dummy"}}) as resp:
        reg = json.loads(await resp.text())
        assert resp.status == 200, reg
    return Client(session, base, reg["access_token"], reg["user_id"], reg["device_id"])


async def _scenario(server) -> None:
    base = server.base_url
    async with aiohttp.ClientSession() as session:
        alice = await _register(session, base, "alice")
        bob = await _register(session, base, "bob")
        versions = await alice.ok("GET", "/_matrix/client/versions")
        assert versions["unstable_features"]["org.matrix.simplified_msc3575"] is True
        rooms = []
        for i in range(5):
            room = (await alice.ok("POST", "/_matrix/client/v3/createRoom",
                                   {"name": f"room {i}", "preset": "public_chat"}))["room_id"]
            rooms.append(room)
        await bob.ok("POST", f"/_matrix/client/v3/join/{rooms[0]}", {})

        status, first = await alice.room_list()
        assert status == 200, first
        assert first["lists"]["all_rooms"]["count"] == 5
        # Most recent first: bob's join does not bump room 0, so room 4 leads.
        assert list(first["rooms"])[0] == rooms[4]

        # A long poll woken by bob's message, which moves room 0 to the top.
        poll = asyncio.create_task(alice.room_list(first["pos"], timeout=30000))
        await asyncio.sleep(0.2)
        message = await bob.ok("PUT", f"/_matrix/client/v3/rooms/{rooms[0]}/send/m.room.message/t1",
                               {"msgtype": "m.text", "body": "to the top"})
        status, woken = await asyncio.wait_for(poll, 20)
        assert status == 200, woken
        assert list(woken["rooms"]) == [rooms[0]]
        assert woken["rooms"][rooms[0]]["timeline"][-1]["content"]["body"] == "to the top"
        assert woken["rooms"][rooms[0]]["bump_stamp"] > max(
            first["rooms"][r]["bump_stamp"] for r in first["rooms"])

        # An invite lands in the invites list.
        other = (await bob.ok("POST", "/_matrix/client/v3/createRoom", {"name": "bob's"}))["room_id"]
        await bob.ok("POST", f"/_matrix/client/v3/rooms/{other}/invite", {"user_id": alice.user_id})
        status, invited = await alice.room_list(woken["pos"])
        assert invited["lists"]["invites"]["count"] == 1
        assert "invite_state" in invited["rooms"][other]

        # Typing and a read receipt reach alice through the extensions.
        await bob.ok("PUT", f"/_matrix/client/v3/rooms/{rooms[0]}/typing/{bob.user_id}",
                     {"typing": True, "timeout": 10000})
        await bob.ok("POST", f"/_matrix/client/v3/rooms/{rooms[0]}/receipt/m.read/{message['event_id']}", {})
        status, ephemeral = await alice.room_list(invited["pos"])
        assert ephemeral["extensions"]["typing"]["rooms"][rooms[0]]["content"]["user_ids"] == [bob.user_id]
        assert bob.user_id in ephemeral["extensions"]["receipts"]["rooms"][rooms[0]]["content"][
            message["event_id"]]["m.read"]

        # The encryption connection: to-device messages, and bob's devices once he shares a room.
        enc = await alice.encryption(None, None)
        await bob.ok("PUT", "/_matrix/client/v3/sendToDevice/m.room_key_request/k1",
                     {"messages": {alice.user_id: {alice.device_id: {"action": "request"}}}})
        enc2 = await alice.encryption(enc["pos"], enc["extensions"]["to_device"]["next_batch"], timeout=10000)
        assert [e["content"] for e in enc2["extensions"]["to_device"]["events"]] == [{"action": "request"}]
        assert "device_one_time_keys_count" in enc2["extensions"]["e2ee"]
        stale_pos = ephemeral["pos"]

    # A restart loses the connections: the stale pos is M_UNKNOWN_POS, and a fresh start works.
    server.stop()
    server.start()
    async with aiohttp.ClientSession() as session:
        alice.session = session
        status, answer = await alice.room_list(stale_pos)
        assert status == 400 and answer["errcode"] == "M_UNKNOWN_POS", answer
        status, again = await alice.room_list()
        # The invite is the latest activity, then bob's message.
        assert status == 200 and list(again["rooms"])[:2] == [other, rooms[0]]


def test_element_x_style_session_against_the_process(server):
    asyncio.run(_scenario(server))
