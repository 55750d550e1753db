"""Reporting content (events, rooms, users) and the admin API that lists the reports.

Spec: https://spec.matrix.org/v1.19/client-server-api/#reporting-content
Admin API shaped like Synapse's docs/admin_api/event_reports.md.
"""

from __future__ import annotations

V3 = "/_matrix/client/v3"
ADMIN = "/_synapse/admin/v1"


async def make_admin(api, name: str = "root"):
    user = await api.register(name)
    await api.services.users.set_admin(user.user_id, True)
    return user


async def stored_reports(services) -> int:
    return await services.db.fetchval("SELECT count(*) FROM reports")


async def test_report_an_event_and_read_it_as_admin(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(name="Family", preset="public_chat")
    await bob.join(room)
    event_id = await alice.send_text(room, "something rude")

    r = await bob.post(f"{V3}/rooms/{room}/report/{event_id}", {"reason": "rude", "score": -100})
    assert r.status == 200 and r.body == {}, r

    r = await root.get(f"{ADMIN}/event_reports")
    assert r.status == 200, r
    assert r["total"] == 1 and "next_token" not in r.body
    [report] = r["event_reports"]
    assert report["event_id"] == event_id and report["room_id"] == room
    assert report["user_id"] == bob.user_id and report["sender"] == alice.user_id
    assert report["reason"] == "rude" and report["score"] == -100
    assert report["name"] == "Family" and report["canonical_alias"] is None
    assert isinstance(report["received_ts"], int) and isinstance(report["id"], int)

    r = await root.get(f"{ADMIN}/event_reports/{report['id']}")
    assert r.status == 200, r
    assert r["event_json"]["event_id"] == event_id
    assert r["event_json"]["content"]["body"] == "something rude"

    r = await root.delete(f"{ADMIN}/event_reports/{report['id']}")
    assert r.status == 200
    r = await root.get(f"{ADMIN}/event_reports/{report['id']}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_reason_and_score_are_optional(api):
    alice = await api.register("alice")
    room = await alice.create_room(preset="public_chat")
    event_id = await alice.send_text(room, "hello")
    r = await alice.post(f"{V3}/rooms/{room}/report/{event_id}", {})
    assert r.status == 200, r
    r = await alice.request("POST", f"{V3}/rooms/{room}/report/{event_id}", raw=b"")
    assert r.status == 200, r
    assert await stored_reports(api.services) == 2


async def test_event_reports_need_a_joined_reporter_and_a_known_event(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    event_id = await alice.send_text(room, "hello")
    other_room = await alice.create_room()
    other_event = await alice.send_text(other_room, "elsewhere")

    # Not joined: the same 404 as for an unknown event, so nothing about the room leaks.
    r = await bob.post(f"{V3}/rooms/{room}/report/{event_id}", {"reason": "x"})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    await bob.join(room)
    for path in (
        f"{V3}/rooms/{room}/report/$unknown",
        f"{V3}/rooms/{room}/report/{other_event}",  # an event of another room
        f"{V3}/rooms/!nowhere:test.local/report/{event_id}",
    ):
        r = await bob.post(path, {"reason": "x"})
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", (path, r)
    # Left again: no more reports.
    await bob.post(f"{V3}/rooms/{room}/leave", {})
    r = await bob.post(f"{V3}/rooms/{room}/report/{event_id}", {"reason": "x"})
    assert r.status == 404
    assert await stored_reports(api.services) == 0


async def test_event_reports_respect_history_visibility(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    r = await alice.put(f"{V3}/rooms/{room}/state/m.room.history_visibility/", {"history_visibility": "joined"})
    assert r.status == 200
    before_join = await alice.send_text(room, "before bob")
    await bob.join(room)
    r = await bob.post(f"{V3}/rooms/{room}/report/{before_join}", {"reason": "x"})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_bad_event_report_bodies(api):
    alice = await api.register("alice")
    room = await alice.create_room(preset="public_chat")
    event_id = await alice.send_text(room, "hello")
    path = f"{V3}/rooms/{room}/report/{event_id}"
    cases = [
        ({"reason": 5}, "M_BAD_JSON"),
        ({"score": "-100"}, "M_BAD_JSON"),
        ({"score": True}, "M_BAD_JSON"),
        ({"score": -100.5}, "M_BAD_JSON"),
        ({"score": 1}, "M_INVALID_PARAM"),
        ({"score": -101}, "M_INVALID_PARAM"),
        ({"reason": "x" * 10_001}, "M_INVALID_PARAM"),
        ([1], "M_BAD_JSON"),
    ]
    for body, errcode in cases:
        r = await alice.post(path, body)
        assert r.status == 400 and r.errcode == errcode, (body, r)
    r = await alice.request("POST", path, raw=b"{nope")
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await alice.post(f"{V3}/rooms/not-a-room/report/{event_id}", {})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await api.request("POST", path, {"reason": "x"})
    assert r.status == 401
    assert await stored_reports(api.services) == 0


async def test_room_reports_need_no_membership(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(name="Spam central")
    # Spec v1.13: servers MUST NOT require the reporter to be joined.
    r = await bob.post(f"{V3}/rooms/{room}/report", {"reason": "spam"})
    assert r.status == 200 and r.body == {}, r
    r = await bob.post(f"{V3}/rooms/!unknown:test.local/report", {"reason": "spam"})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await bob.post(f"{V3}/rooms/{room}/report", {"reason": ["spam"]})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"

    r = await root.get(f"{ADMIN}/room_reports")
    assert r.status == 200 and r["total"] == 1, r
    [report] = r["room_reports"]
    assert report["room_id"] == room and report["user_id"] == bob.user_id
    assert report["reason"] == "spam" and report["name"] == "Spam central"
    assert "event_id" not in report
    r = await root.get(f"{ADMIN}/room_reports/{report['id']}")
    assert r.status == 200 and r["room_id"] == room
    # Room reports are not event reports.
    assert (await root.get(f"{ADMIN}/event_reports"))["total"] == 0
    assert (await root.get(f"{ADMIN}/event_reports/{report['id']}")).status == 404


async def test_user_reports(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await alice.post(f"{V3}/users/{bob.user_id}/report", {"reason": "harassment"})
    assert r.status == 200 and r.body == {}, r
    # Other servers' users cannot be checked here: the report is taken.
    r = await alice.post(f"{V3}/users/@someone:elsewhere.example/report", {"reason": "spam"})
    assert r.status == 200, r
    r = await alice.post(f"{V3}/users/@nobody:test.local/report", {"reason": "x"})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await alice.post(f"{V3}/users/not-a-user/report", {"reason": "x"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await alice.post(f"{V3}/users/{bob.user_id}/report", {"reason": 1})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    assert await stored_reports(api.services) == 2

    r = await root.get(f"{ADMIN}/user_reports", params={"dir": "f"})
    assert r.status == 200 and r["total"] == 2
    assert [x["target_user_id"] for x in r["user_reports"]] == [bob.user_id, "@someone:elsewhere.example"]
    assert all(x["user_id"] == alice.user_id for x in r["user_reports"])
    r = await root.get(f"{ADMIN}/user_reports", params={"target_user_id": "elsewhere"})
    assert [x["target_user_id"] for x in r["user_reports"]] == ["@someone:elsewhere.example"]


async def test_admin_pagination_order_and_filters(api):
    root = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    events = [await alice.send_text(room, f"m{i}") for i in range(5)]
    for event_id in events:
        r = await bob.post(f"{V3}/rooms/{room}/report/{event_id}", {"reason": "x"})
        assert r.status == 200
    await alice.post(f"{V3}/rooms/{room}/report/{events[0]}", {"reason": "mine"})

    # Newest first by default, pages by offset with next_token.
    r = await root.get(f"{ADMIN}/event_reports", params={"limit": "2"})
    assert r["total"] == 6 and r["next_token"] == 2
    assert [x["reason"] for x in r["event_reports"]] == ["mine", "x"]
    seen = [x["id"] for x in r["event_reports"]]
    while "next_token" in r.body:
        r = await root.get(f"{ADMIN}/event_reports", params={"limit": "2", "from": str(r["next_token"])})
        seen += [x["id"] for x in r["event_reports"]]
    assert len(seen) == 6 and seen == sorted(seen, reverse=True)
    r = await root.get(f"{ADMIN}/event_reports", params={"dir": "f"})
    assert [x["id"] for x in r["event_reports"]] == sorted(seen)
    r = await root.get(f"{ADMIN}/event_reports", params={"user_id": "alice"})
    assert r["total"] == 1 and r["event_reports"][0]["user_id"] == alice.user_id
    r = await root.get(f"{ADMIN}/event_reports", params={"room_id": room})
    assert r["total"] == 6
    r = await root.get(f"{ADMIN}/event_reports", params={"room_id": "!other%"})
    assert r["total"] == 0

    for params in ({"dir": "x"}, {"limit": "-1"}, {"from": "-1"}, {"from": "a"}):
        r = await root.get(f"{ADMIN}/event_reports", params=params)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (params, r)
    for path in (f"{ADMIN}/event_reports/abc", f"{ADMIN}/event_reports/-1"):
        r = await root.get(path)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    assert (await root.get(f"{ADMIN}/event_reports/999999")).status == 404


async def test_admin_api_is_for_admins_only(api):
    alice = await api.register("alice")
    for method, path in (
        ("GET", f"{ADMIN}/event_reports"), ("GET", f"{ADMIN}/event_reports/1"),
        ("DELETE", f"{ADMIN}/event_reports/1"), ("GET", f"{ADMIN}/room_reports"),
        ("GET", f"{ADMIN}/user_reports"),
    ):
        r = await alice.request(method, path)
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", (path, r)
        r = await api.request(method, path)
        assert r.status == 401, (path, r)
