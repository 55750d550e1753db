"""Two real server processes on one database (docs/scaling.md): what a client sees on one
process of what was written on the other, and a `kill -9` of one of them."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.e2e.server_process import ServerProcess

V3 = "/_matrix/client/v3"
# Every event of a sync in one timeline: a limited timeline would hide a gap.
FILTER = json.dumps({"room": {"timeline": {"limit": 500}}})


class Client:
    def __init__(self, session: aiohttp.ClientSession, server: ServerProcess):
        self.session = session
        self.base = server.base_url + V3
        self.token = ""
        self.user_id = ""
        self.device_id = ""
        self._txn = 0

    def on(self, server: ServerProcess) -> "Client":
        """The same user (same access token) talking to another process."""
        other = Client(self.session, server)
        other.token, other.user_id, other.device_id = self.token, self.user_id, self.device_id
        return other

    async def call(self, method: str, path: str, body=None, params=None, ok=True):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(method, self.base + path, json=body, params=params,
                                        headers=headers) as resp:
            data = json.loads(await resp.text())
            if ok:
                assert resp.status == 200, (method, path, resp.status, data)
            return data

    async def register(self, name: str) -> "Client":
        data = await self.call("POST", "/register", {
            "username": name, "password": "a strong password", "auth": {"type": "m.login.dummy"}})
        self.token, self.user_id, self.device_id = data["access_token"], data["user_id"], data["device_id"]
        return self

    async def send(self, room_id: str, body: str) -> str:
        self._txn += 1
        data = await self.call("PUT", f"/rooms/{room_id}/send/m.room.message/t{self._txn}",
                               {"msgtype": "m.text", "body": body})
        return data["event_id"]

    async def sync(self, since: str | None = None, timeout_ms: int = 0) -> dict:
        params = {"timeout": str(timeout_ms), "filter": FILTER}
        if since is not None:
            params["since"] = since
        return await self.call("GET", "/sync", params=params)


def timeline(sync: dict, room_id: str) -> dict:
    return sync["rooms"]["join"].get(room_id, {}).get("timeline", {"events": [], "limited": False})


@pytest.fixture
async def two(tmp_path, database_dsn):
    first = ServerProcess(tmp_path / "a", database_dsn)
    first.start()
    second = first.sibling(tmp_path / "b")
    try:
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()


async def _room_with(owner: Client, members: list[Client]) -> str:
    room_id = (await owner.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    for member in members:
        await member.call("POST", f"/join/{room_id}", {})
    return room_id


async def _collect(syncer: Client, room_id: str, since: str, wanted: set[str] | int,
                   seen: list[str], limit_s: float = 60) -> str:
    """Long-poll until every wanted event id (or that many events) was received; each
    timeline must be complete."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s

    def done() -> bool:
        return len(seen) >= wanted if isinstance(wanted, int) else wanted <= set(seen)

    while not done():
        assert loop.time() < deadline, f"missing events: got {len(seen)}"
        data = await syncer.sync(since, timeout_ms=10_000)
        since = data["next_batch"]
        line = timeline(data, room_id)
        assert not line.get("limited"), "a gap: the timeline was limited"
        seen.extend(e["event_id"] for e in line["events"] if e["type"] == "m.room.message")
    return since


async def test_long_poll_on_one_process_receives_everything_written_on_both(two):
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        senders_b = [await Client(session, b).register(f"bob{i}") for i in range(3)]
        carol = await Client(session, a).register("carol")
        room_id = await _room_with(alice, senders_b + [carol])
        since = (await alice.sync())["next_batch"]

        seen: list[str] = []
        sent: set[str] = set()

        async def send_many(client: Client, count: int) -> None:
            for n in range(count):
                sent.add(await client.send(room_id, f"{client.user_id} {n}"))

        # Alice long-polls on A while three clients on B and one on A send at once.
        collector = asyncio.create_task(_collect(alice, room_id, since, 4 * 25, seen))
        await asyncio.gather(*(send_many(c, 25) for c in senders_b + [carol]))
        await collector
        assert set(seen) == sent

        # Each event once, in the room's order as either process tells it.
        assert len(seen) == len(set(seen)) == len(sent)
        for reader in (alice, alice.on(b)):
            page = await reader.call("GET", f"/rooms/{room_id}/messages",
                                     params={"dir": "f", "limit": "1000"})
            order = [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.message"]
            assert order == seen


async def test_concurrent_long_poll_while_both_send(two):
    """The syncer waits while both processes write: it is woken for every write of either."""
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        bob = await Client(session, b).register("bob")
        carol = await Client(session, a).register("carol")
        room_id = await _room_with(alice, [bob, carol])
        since = (await alice.sync())["next_batch"]
        seen: list[str] = []
        sent: set[str] = set()

        async def send_many(client: Client, count: int) -> None:
            for n in range(count):
                sent.add(await client.send(room_id, f"{client.user_id} {n}"))
                await asyncio.sleep(0.002)

        expected = 40 * 2
        senders = asyncio.gather(send_many(bob, 40), send_many(carol, 40))
        got_all = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(got_all) < expected:
            assert loop.time() < deadline
            data = await alice.sync(since, timeout_ms=10_000)
            since = data["next_batch"]
            line = timeline(data, room_id)
            assert not line.get("limited")
            ids = [e["event_id"] for e in line["events"] if e["type"] == "m.room.message"]
            seen.extend(ids)
            got_all.update(ids)
        await senders
        assert got_all == sent and len(seen) == len(sent)
        page = await alice.on(b).call("GET", f"/rooms/{room_id}/messages", params={"dir": "f", "limit": "1000"})
        assert [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.message"] == seen


async def _eventually(check, failure: str, limit_s: float = 10) -> None:
    """Poll ``check()`` (a coroutine function) until it is true; fail with ``failure`` after ``limit_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not await check():
        assert loop.time() < deadline, failure
        await asyncio.sleep(0.05)


async def _sync_until(client: Client, since: str, found, limit_s: float = 30) -> tuple[dict, str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        assert loop.time() < deadline, "not received"
        data = await client.sync(since, timeout_ms=5_000)
        since = data["next_batch"]
        if found(data):
            return data, since


async def test_typing_receipts_and_to_device_cross_over(two):
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        bob = await Client(session, b).register("bob")
        room_id = await _room_with(alice, [bob])
        since = (await alice.sync())["next_batch"]

        def ephemeral(data: dict, kind: str) -> list[dict]:
            room = data["rooms"]["join"].get(room_id, {})
            return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == kind]

        # Typing on B, seen on A (the token of A then means the same on B).
        await bob.call("PUT", f"/rooms/{room_id}/typing/{bob.user_id}", {"typing": True, "timeout": 20_000})
        data, since = await _sync_until(alice, since, lambda d: ephemeral(d, "m.typing"))
        assert ephemeral(data, "m.typing")[-1]["content"]["user_ids"] == [bob.user_id]
        await bob.call("PUT", f"/rooms/{room_id}/typing/{bob.user_id}", {"typing": False})
        data, since = await _sync_until(
            alice, since, lambda d: any(e["content"]["user_ids"] == [] for e in ephemeral(d, "m.typing")))

        # A read receipt on B.
        event_id = await alice.send(room_id, "read me")
        await bob.call("POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", {})
        data, since = await _sync_until(alice, since, lambda d: any(
            bob.user_id in e["content"].get(event_id, {}).get("m.read", {}) for e in ephemeral(d, "m.receipt")))

        # A to-device message from B's user to alice's device.
        await bob.call("PUT", "/sendToDevice/org.example.ping/txn1",
                       {"messages": {alice.user_id: {alice.device_id: {"ping": 1}}}})
        data, since = await _sync_until(alice, since, lambda d: d.get("to_device", {}).get("events"))
        assert data["to_device"]["events"][0]["content"] == {"ping": 1}

        # And the other way round: A's typing seen by bob syncing on B.
        bob_since = (await bob.sync())["next_batch"]
        await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": True, "timeout": 20_000})
        data, _ = await _sync_until(bob, bob_since, lambda d: any(
            alice.user_id in e["content"]["user_ids"]
            for e in d["rooms"]["join"].get(room_id, {}).get("ephemeral", {}).get("events", [])
            if e["type"] == "m.typing"))

        # A token from one process is read the same on the other: nothing comes twice.
        token_a = (await alice.sync())["next_batch"]
        again = await alice.on(b).sync(token_a)
        assert timeline(again, room_id)["events"] == []


async def test_logout_on_one_process_ends_the_token_on_the_other(two):
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        on_b = alice.on(b)
        await on_b.call("GET", "/account/whoami")  # cached on B now
        await alice.call("POST", "/logout", {})

        async def refused_on_b() -> bool:
            async with session.get(b.base_url + V3 + "/account/whoami",
                                   headers={"Authorization": f"Bearer {alice.token}"}) as resp:
                return resp.status == 401

        await _eventually(refused_on_b, "B still accepts the token")


async def test_kill_9_of_one_process_loses_nothing_and_the_other_keeps_going(two):
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        bobs = [await Client(session, b).register(f"bob{i}") for i in range(4)]
        room_id = await _room_with(alice, bobs)
        since = (await alice.sync())["next_batch"]
        acknowledged: set[str] = set()

        async def send_forever(client: Client) -> None:
            n = 0
            while True:
                acknowledged.add(await client.send(room_id, f"{client.user_id} {n}"))
                n += 1

        tasks = [asyncio.create_task(send_forever(c)) for c in bobs]
        while len(acknowledged) < 40:
            await asyncio.sleep(0.01)
        b.kill()  # mid-write: some positions of B never finish
        await asyncio.gather(*tasks, return_exceptions=True)
        done = set(acknowledged)

        # A keeps serving, and its streams move on past whatever B left in flight.
        after = await alice.send(room_id, "after the crash")
        seen: list[str] = []
        await _collect(alice, room_id, since, done | {after}, seen)
        assert len(seen) == len(set(seen))
        page = await alice.call("GET", f"/rooms/{room_id}/messages", params={"dir": "f", "limit": "1000"})
        stored = [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.message"]
        assert done <= set(stored)
        # What alice saw is the room's order (events of B that committed unacknowledged included).
        assert seen == stored[:len(seen)]

        # Another sender on A is woken for, too: the other streams advance as well.
        await alice.call("PUT", f"/user/{alice.user_id}/account_data/org.example.after", {"ok": True})
        await _sync_until(alice, since, lambda d: any(
            e["type"] == "org.example.after" for e in d.get("account_data", {}).get("events", [])))

        # B comes back and serves on the same database.
        b.start()
        later = await alice.on(b).send(room_id, "B is back")
        seen_again: list[str] = []
        await _collect(alice, room_id, since, done | {after, later}, seen_again)


async def test_a_redaction_on_one_process_is_seen_on_the_other(two):
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        room_id = await _room_with(alice, [])
        event_id = await alice.send(room_id, "oops")
        seen = await alice.call("GET", f"/rooms/{room_id}/event/{event_id}")  # in A's cache now
        assert seen["content"]["body"] == "oops"
        await alice.on(b).call("PUT", f"/rooms/{room_id}/redact/{event_id}/r1", {"reason": "typo"})

        async def redacted_on_a() -> bool:
            return not (await alice.call("GET", f"/rooms/{room_id}/event/{event_id}"))["content"]

        await _eventually(redacted_on_a, "A still serves the unredacted event")


async def test_a_process_that_starts_learns_who_is_typing(two):
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        bob = await Client(session, a).register("bob")
        room_id = await _room_with(alice, [bob])
        await alice.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": True, "timeout": 30_000})
        b.stop()
        b.start()  # knew nothing of it: told when it says hello

        async def b_shows_alice_typing() -> bool:
            data = await bob.on(b).sync()
            typing = [e for e in data["rooms"]["join"].get(room_id, {}).get("ephemeral", {}).get("events", [])
                      if e["type"] == "m.typing"]
            return bool(typing) and typing[-1]["content"]["user_ids"] == [alice.user_id]

        await _eventually(b_shows_alice_typing, "B does not show alice typing")


async def test_a_retried_send_on_the_other_process_is_the_same_event(two):
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        room_id = await _room_with(alice, [])
        path = f"/rooms/{room_id}/send/m.room.message/retried"
        body = {"msgtype": "m.text", "body": "once"}
        first = await alice.call("PUT", path, body)
        again = await alice.on(b).call("PUT", path, body)
        assert again["event_id"] == first["event_id"]
        page = await alice.on(b).call("GET", f"/rooms/{room_id}/messages", params={"dir": "b", "limit": "50"})
        assert [e["content"]["body"] for e in page["chunk"] if e["type"] == "m.room.message"] == ["once"]


async def test_a_push_rule_changed_on_one_process_counts_on_the_other(two):
    """Process A keeps users' compiled push rules; a rule set through B must reach them."""
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        bob = await Client(session, a).register("bob")
        room_id = await _room_with(alice, [bob])
        await bob.send(room_id, "one")
        data = await alice.sync()
        assert data["rooms"]["join"][room_id]["unread_notifications"]["notification_count"] == 1  # rules cached
        await alice.on(b).call("PUT", f"/pushrules/global/room/{room_id}", {"actions": []})
        # Once A's sync shows the new rules, A has heard of the change (and forgotten its copy).
        def shows_the_rule(d: dict) -> bool:
            rules = [e for e in d["account_data"]["events"] if e["type"] == "m.push_rules"]
            return bool(rules) and any(r["rule_id"] == room_id for r in rules[0]["content"]["global"]["room"])

        await _sync_until(alice, data["next_batch"], shows_the_rule)
        await bob.send(room_id, "muted")
        data = await alice.sync()
        assert data["rooms"]["join"][room_id]["unread_notifications"]["notification_count"] == 1


async def test_an_ignore_list_written_on_one_process_hides_on_the_other(two):
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        bob = await Client(session, a).register("bob")
        room_id = await _room_with(alice, [bob])
        data = await alice.sync()  # A now holds alice's (empty) ignore list
        await alice.on(b).call("PUT", f"/user/{alice.user_id}/account_data/m.ignored_user_list",
                               {"ignored_users": {bob.user_id: {}}})
        _, since = await _sync_until(alice, data["next_batch"], lambda d: any(
            e["type"] == "m.ignored_user_list" for e in d["account_data"]["events"]))
        await bob.send(room_id, "you should not see this")
        data = await alice.sync(since)
        assert [e for e in timeline(data, room_id)["events"] if e["sender"] == bob.user_id] == []


async def test_memberships_changed_on_one_process_are_seen_by_long_polls_on_the_other(two):
    """A's /sync remembers alice's rooms between her syncs and reads only the memberships
    changed since (by their positions: nothing tells it). Invited, joined and left on B,
    each shows in her long polls on A."""
    a, b = two
    async with aiohttp.ClientSession() as session:
        alice = await Client(session, a).register("alice")
        bob = await Client(session, b).register("bob")
        mine = await _room_with(alice, [])
        since = (await alice.sync())["next_batch"]  # her rooms are known to A from here
        room_id = (await bob.call("POST", "/createRoom", {"preset": "private_chat"}))["room_id"]
        await bob.call("POST", f"/rooms/{room_id}/invite", {"user_id": alice.user_id})
        _, since = await _sync_until(alice, since, lambda d: room_id in d["rooms"]["invite"])
        await alice.on(b).call("POST", f"/join/{room_id}", {})
        data, since = await _sync_until(alice, since, lambda d: room_id in d["rooms"]["join"])
        assert any(e["type"] == "m.room.member" and e["state_key"] == alice.user_id
                   for e in timeline(data, room_id)["events"])
        said = await bob.send(room_id, "hello from B")
        data, since = await _sync_until(alice, since, lambda d: room_id in d["rooms"]["join"])
        assert said in [e["event_id"] for e in timeline(data, room_id)["events"]]
        await alice.on(b).call("POST", f"/rooms/{room_id}/leave", {})
        _, since = await _sync_until(alice, since, lambda d: room_id in d["rooms"]["leave"])
        await bob.send(room_id, "after she left")
        data = await alice.sync()
        assert set(data["rooms"]["join"]) == {mine}
