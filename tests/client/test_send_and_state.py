"""Sending events, reading and writing state, single events and member lists.

Spec: https://spec.matrix.org/v1.19/client-server-api/#sending-events-to-a-room,
https://spec.matrix.org/v1.19/client-server-api/#getting-events-for-a-room
"""

from __future__ import annotations


V3 = "/_matrix/client/v3"


def send_path(room_id: str, txn_id: str, event_type: str = "m.room.message") -> str:
    return f"{V3}/rooms/{room_id}/send/{event_type}/{txn_id}"


def state_path(room_id: str, event_type: str, state_key: str | None = "") -> str:
    base = f"{V3}/rooms/{room_id}/state/{event_type}"
    return base if state_key is None else f"{base}/{state_key}"


async def count_events(services, room_id: str, event_type: str | None = None) -> int:
    return await services.db.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND ($2::text IS NULL OR type = $2)",
        room_id, event_type,
    )


def timeline_of(sync, room_id: str) -> list[dict]:
    return sync["rooms"]["join"][room_id]["timeline"]["events"]


# Idempotent sends


async def test_same_txn_id_same_device_gives_one_event(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    body = {"msgtype": "m.text", "body": "once"}
    first = await alice.put(send_path(room_id, "txn1"), body)
    assert first.status == 200, first
    assert first["event_id"].startswith("$")
    again = await alice.put(send_path(room_id, "txn1"), body)
    assert again.status == 200 and again["event_id"] == first["event_id"]
    assert await count_events(services, room_id, "m.room.message") == 1
    # Another transaction id is another event.
    other = await alice.put(send_path(room_id, "txn2"), body)
    assert other["event_id"] != first["event_id"]
    assert await count_events(services, room_id, "m.room.message") == 2


async def test_same_txn_id_other_device_is_a_new_event(api, services):
    alice = await api.register("alice")
    login = await api.login("alice")
    assert login.status == 200, login
    room_id = await alice.create_room()
    first = await alice.put(send_path(room_id, "shared"), {"msgtype": "m.text", "body": "a"})
    second = await api.request("PUT", send_path(room_id, "shared"), {"msgtype": "m.text", "body": "b"},
                               token=login["access_token"])
    assert first.status == 200 and second.status == 200, (first, second)
    assert first["event_id"] != second["event_id"]
    assert await count_events(services, room_id, "m.room.message") == 2


async def test_transaction_id_is_shown_to_the_sending_device_only(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    login = await api.login("alice")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    event_id = await alice.send_text(room_id, "hi", txn_id="mytxn")

    own = [e for e in timeline_of(await alice.sync(), room_id) if e["event_id"] == event_id]
    assert own and own[0]["unsigned"]["transaction_id"] == "mytxn"
    r = await alice.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert r["unsigned"]["transaction_id"] == "mytxn"
    r = await alice.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b", "limit": "1"})
    assert r["chunk"][0]["event_id"] == event_id
    assert r["chunk"][0]["unsigned"]["transaction_id"] == "mytxn"

    r = await api.request("GET", f"{V3}/sync", token=login["access_token"], params={"timeout": "0"})
    other_device = [e for e in timeline_of(r, room_id) if e["event_id"] == event_id]
    assert other_device and "transaction_id" not in other_device[0]["unsigned"]
    r = await api.request("GET", f"{V3}/rooms/{room_id}/event/{event_id}", token=login["access_token"])
    assert r.status == 200 and "transaction_id" not in r["unsigned"]

    seen_by_bob = [e for e in timeline_of(await bob.sync(), room_id) if e["event_id"] == event_id]
    assert seen_by_bob and "transaction_id" not in seen_by_bob[0]["unsigned"]
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert "transaction_id" not in r["unsigned"]


# Refused sends


async def test_send_to_room_not_joined_is_forbidden(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    before = await count_events(services, room_id)
    r = await bob.put(send_path(room_id, "t1"), {"msgtype": "m.text", "body": "let me in"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await bob.put(state_path(room_id, "m.room.topic"), {"topic": "mine"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    # Invited is not joined either.
    await alice.invite(room_id, bob.user_id)
    before = await count_events(services, room_id)
    r = await bob.put(send_path(room_id, "t2"), {"msgtype": "m.text", "body": "let me in"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await count_events(services, room_id) == before


async def test_send_to_unknown_room(api):
    bob = await api.register("bob")
    r = await bob.put(send_path("!nowhere:test.local", "t1"), {"msgtype": "m.text", "body": "x"})
    assert r.status in (403, 404) and r.errcode in ("M_FORBIDDEN", "M_NOT_FOUND"), r
    r = await bob.put(send_path("not-a-room", "t1"), {"msgtype": "m.text", "body": "x"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_changing_state_without_power_is_forbidden(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat", name="Original")
    await bob.join(room_id)
    before = await count_events(services, room_id)
    for event_type, content in (
        ("m.room.name", {"name": "Hijacked"}),
        ("m.room.power_levels", {"users": {bob.user_id: 100}}),
        ("m.room.join_rules", {"join_rule": "invite"}),
        ("org.example.custom", {"x": 1}),  # state_default is 50
    ):
        r = await bob.put(state_path(room_id, event_type), content)
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", (event_type, r)
    assert await count_events(services, room_id) == before
    assert (await bob.get(state_path(room_id, "m.room.name")))["name"] == "Original"
    # But anyone may send a message (events_default 0), and set their own member event.
    await bob.send_text(room_id, "fine")


async def test_event_too_large_is_refused_and_not_stored(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    before = await count_events(services, room_id)
    big = {"msgtype": "m.text", "body": "x" * 66_000}
    r = await alice.put(send_path(room_id, "big"), big)
    assert r.status == 413 and r.errcode == "M_TOO_LARGE", r
    r = await alice.put(state_path(room_id, "org.example.big"), {"data": "y" * 66_000})
    assert r.status == 413 and r.errcode == "M_TOO_LARGE", r
    assert await count_events(services, room_id) == before
    # The failed transaction id was not remembered: a normal send with it works.
    r = await alice.put(send_path(room_id, "big"), {"msgtype": "m.text", "body": "small"})
    assert r.status == 200, r


async def test_event_just_under_the_limit_is_accepted(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.put(send_path(room_id, "mid"), {"msgtype": "m.text", "body": "x" * 60_000})
    assert r.status == 200, r


async def test_floats_are_refused_in_v6_and_later(api, services):
    alice = await api.register("alice")
    for version in ("12", "6"):
        room_id = await alice.create_room(room_version=version)
        before = await count_events(services, room_id)
        r = await alice.put(send_path(room_id, f"f{version}"), {"msgtype": "m.text", "body": "pi", "value": 3.14})
        assert r.status == 400 and r.errcode == "M_BAD_JSON", r
        r = await alice.put(state_path(room_id, "org.example.float"), {"nested": {"f": 0.5}})
        assert r.status == 400 and r.errcode == "M_BAD_JSON", r
        r = await alice.put(send_path(room_id, f"i{version}"), {"msgtype": "m.text", "body": "big", "n": 2**60})
        assert r.status == 400 and r.errcode == "M_BAD_JSON", r
        assert await count_events(services, room_id) == before


async def test_send_body_must_be_a_json_object(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    before = await count_events(services, room_id)
    r = await api.request("PUT", send_path(room_id, "t1"), raw=b"not json", token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await api.request("PUT", send_path(room_id, "t2"), raw=b'["a"]', token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.request("PUT", state_path(room_id, "m.room.name"), raw=b"", token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    assert await count_events(services, room_id) == before


async def test_sent_event_is_readable(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.put(send_path(room_id, "t1", "org.example.ping"), {"n": 1})
    assert r.status == 200
    event_id = r["event_id"]
    event = await alice.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert event.status == 200
    assert event["type"] == "org.example.ping"
    assert event["content"] == {"n": 1}
    assert event["sender"] == alice.user_id
    assert event["room_id"] == room_id
    assert event["event_id"] == event_id
    assert isinstance(event["origin_server_ts"], int)
    assert "state_key" not in event.body
    assert not ({"hashes", "signatures", "prev_events", "auth_events", "depth"} & event.body.keys())


# State


async def test_state_list(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(name="Family", topic="Talk")
    r = await alice.get(f"{V3}/rooms/{room_id}/state")
    assert r.status == 200 and isinstance(r.body, list)
    by_key = {(e["type"], e["state_key"]): e for e in r.body}
    assert len(by_key) == len(r.body)
    assert {("m.room.create", ""), ("m.room.member", alice.user_id), ("m.room.power_levels", ""),
            ("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.name", ""),
            ("m.room.topic", "")} <= by_key.keys()
    assert by_key[("m.room.name", "")]["content"] == {"name": "Family"}
    for event in r.body:
        assert event["room_id"] == room_id and event["event_id"].startswith("$")


async def test_put_and_get_state_with_empty_key_with_and_without_slash(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.put(state_path(room_id, "m.room.name", None), {"name": "No slash"})
    assert r.status == 200 and r["event_id"].startswith("$")
    first_id = r["event_id"]
    assert (await alice.get(state_path(room_id, "m.room.name", None))).body == {"name": "No slash"}
    assert (await alice.get(state_path(room_id, "m.room.name", ""))).body == {"name": "No slash"}

    r = await alice.put(state_path(room_id, "m.room.name", ""), {"name": "Slash"})
    assert r.status == 200 and r["event_id"] != first_id
    assert (await alice.get(state_path(room_id, "m.room.name", None))).body == {"name": "Slash"}
    event = await alice.get(state_path(room_id, "m.room.name", None), params={"format": "event"})
    assert event["state_key"] == "" and event["event_id"] == r["event_id"]
    assert event["unsigned"]["prev_content"] == {"name": "No slash"}


async def test_state_with_a_state_key(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.put(state_path(room_id, "org.example.widget", "w1"), {"url": "https://a"})
    assert r.status == 200
    await alice.put(state_path(room_id, "org.example.widget", "w2"), {"url": "https://b"})
    assert (await alice.get(state_path(room_id, "org.example.widget", "w1"))).body == {"url": "https://a"}
    assert (await alice.get(state_path(room_id, "org.example.widget", "w2"))).body == {"url": "https://b"}
    r = await alice.get(state_path(room_id, "org.example.widget", ""))
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    # A state key with a slash in it (URL-encoded) is one key.
    r = await alice.put(state_path(room_id, "org.example.widget", "a%2Fb"), {"url": "https://c"})
    assert r.status == 200
    event = await alice.get(state_path(room_id, "org.example.widget", "a%2Fb"), params={"format": "event"})
    assert event["state_key"] == "a/b"


async def test_unset_state_is_404(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    for path in (state_path(room_id, "m.room.topic"), state_path(room_id, "m.room.topic", None),
                 state_path(room_id, "m.room.member", "@nobody:test.local")):
        r = await alice.get(path)
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", (path, r)


async def test_format_event(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(name="Family")
    r = await alice.get(state_path(room_id, "m.room.name"), params={"format": "event"})
    assert r.status == 200
    assert r["type"] == "m.room.name" and r["state_key"] == ""
    assert r["content"] == {"name": "Family"}
    assert r["sender"] == alice.user_id and r["room_id"] == room_id
    assert r["event_id"].startswith("$") and isinstance(r["origin_server_ts"], int)
    r = await alice.get(state_path(room_id, "m.room.name"), params={"format": "content"})
    assert r.body == {"name": "Family"}


async def test_left_user_sees_state_as_of_leaving(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat", name="Before")
    await bob.join(room_id)
    r = await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    assert r.status == 200
    r = await alice.put(state_path(room_id, "m.room.name"), {"name": "After"})
    assert r.status == 200
    await alice.put(state_path(room_id, "org.example.later"), {"x": 1})

    assert (await bob.get(state_path(room_id, "m.room.name"))).body == {"name": "Before"}
    r = await bob.get(state_path(room_id, "org.example.later"))
    assert r.status == 404
    r = await bob.get(f"{V3}/rooms/{room_id}/state")
    assert r.status == 200
    by_key = {(e["type"], e["state_key"]): e for e in r.body}
    assert by_key[("m.room.name", "")]["content"] == {"name": "Before"}
    assert by_key[("m.room.member", bob.user_id)]["content"]["membership"] == "leave"
    assert ("org.example.later", "") not in by_key


async def test_non_member_cannot_read_state(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat", name="Secret")
    for path in (f"{V3}/rooms/{room_id}/state", state_path(room_id, "m.room.name"),
                 state_path(room_id, "m.room.topic"), f"{V3}/rooms/{room_id}/members",
                 f"{V3}/rooms/{room_id}/joined_members"):
        r = await bob.get(path)
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", (path, r)
    # An unknown room looks the same as a room one is not in.
    r = await bob.get(f"{V3}/rooms/!nowhere:test.local/state")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await bob.get(f"{V3}/rooms/not-a-room/state")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_invited_user_cannot_read_state(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(invite=[bob.user_id])
    r = await bob.get(f"{V3}/rooms/{room_id}/state")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


# Single events


async def test_get_event_errors(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    other_room = await alice.create_room()
    event_id = await alice.send_text(room_id, "hello")
    elsewhere = await alice.send_text(other_room, "elsewhere")
    r = await alice.get(f"{V3}/rooms/{room_id}/event/$unknown")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await alice.get(f"{V3}/rooms/{room_id}/event/{elsewhere}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    # A user who was never in the room may not read its events.
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert r.status in (403, 404) and r.errcode in ("M_FORBIDDEN", "M_NOT_FOUND"), r
    await bob.join(room_id)
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{event_id}")
    assert r.status == 200 and r["content"]["body"] == "hello"


# Members


async def test_members_and_filters(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    dave = await api.register("dave")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    await carol.post(f"{V3}/rooms/{room_id}/leave", {})
    await alice.invite(room_id, dave.user_id)

    async def members(**params) -> dict[str, str]:
        r = await alice.get(f"{V3}/rooms/{room_id}/members", params=params)
        assert r.status == 200, r
        for event in r["chunk"]:
            assert event["type"] == "m.room.member" and event["room_id"] == room_id
        return {e["state_key"]: e["content"]["membership"] for e in r["chunk"]}

    assert await members() == {alice.user_id: "join", bob.user_id: "join", carol.user_id: "leave",
                               dave.user_id: "invite"}
    assert await members(membership="join") == {alice.user_id: "join", bob.user_id: "join"}
    assert await members(membership="invite") == {dave.user_id: "invite"}
    assert await members(not_membership="leave") == {alice.user_id: "join", bob.user_id: "join",
                                                      dave.user_id: "invite"}
    assert await members(membership="ban") == {}
    r = await alice.get(f"{V3}/rooms/{room_id}/members", params={"membership": "joined"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_members_at_a_sync_token(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    before_room = (await alice.sync())["next_batch"]
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await alice.send_text(room_id, "hello")
    sync = await alice.sync(filter='{"room": {"timeline": {"limit": 1}}}')
    prev_batch = sync["rooms"]["join"][room_id]["timeline"]["prev_batch"]
    next_batch = sync["next_batch"]
    await carol.join(room_id)
    await bob.post(f"{V3}/rooms/{room_id}/leave", {})

    async def members_at(token: str | None) -> dict[str, str]:
        params = {"at": token} if token else {}
        r = await alice.get(f"{V3}/rooms/{room_id}/members", params=params)
        assert r.status == 200, r
        return {e["state_key"]: e["content"]["membership"] for e in r["chunk"]}

    assert await members_at(None) == {alice.user_id: "join", bob.user_id: "leave", carol.user_id: "join"}
    assert await members_at(next_batch) == {alice.user_id: "join", bob.user_id: "join"}
    assert await members_at(prev_batch) == {alice.user_id: "join", bob.user_id: "join"}
    # Before the room existed it had no members.
    assert await members_at(before_room) == {}
    r = await alice.get(f"{V3}/rooms/{room_id}/members", params={"at": "garbage"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_left_user_sees_members_as_of_leaving(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    await carol.join(room_id)
    r = await bob.get(f"{V3}/rooms/{room_id}/members")
    assert r.status == 200
    assert {e["state_key"]: e["content"]["membership"] for e in r["chunk"]} == {
        alice.user_id: "join", bob.user_id: "leave"}
    # Nor does a later point in time show bob what happened after he left.
    now = (await alice.sync())["next_batch"]
    r = await bob.get(f"{V3}/rooms/{room_id}/members", params={"at": now})
    assert r.status == 200
    assert carol.user_id not in {e["state_key"] for e in r["chunk"]}
    # /joined_members is for current members only.
    r = await bob.get(f"{V3}/rooms/{room_id}/joined_members")
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_joined_members(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    r = await bob.put(f"{V3}/profile/{bob.user_id}/displayname", {"displayname": "Bobby"})
    assert r.status == 200
    r = await bob.put(f"{V3}/profile/{bob.user_id}/avatar_url", {"avatar_url": "mxc://test.local/abc"})
    assert r.status == 200
    room_id = await alice.create_room(preset="public_chat", invite=[carol.user_id])
    await bob.join(room_id)
    r = await alice.get(f"{V3}/rooms/{room_id}/joined_members")
    assert r.status == 200
    joined = r["joined"]
    assert set(joined) == {alice.user_id, bob.user_id}  # not the invited carol
    assert joined[bob.user_id]["display_name"] == "Bobby"
    assert joined[bob.user_id]["avatar_url"] == "mxc://test.local/abc"
    assert joined[alice.user_id].get("display_name") in (None, "alice")


async def test_left_user_reads_events_up_to_leaving_only(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    before = await alice.send_text(room_id, "before")
    r = await bob.post(f"{V3}/rooms/{room_id}/leave", {})
    assert r.status == 200
    after = await alice.send_text(room_id, "after")
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{before}")
    assert r.status == 200 and r["content"]["body"] == "before"
    r = await bob.get(f"{V3}/rooms/{room_id}/event/{after}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
