"""Server notices: Synapse's docs/admin_api/server_notices.md, as synapse-admin sends them."""

from __future__ import annotations

from urllib.parse import quote

from homeserver.config import ServerNoticesConfig
from tests.admin.helpers import V1, admin_services, assert_admin_only, make_admin

NOTICE = V1 + "/send_server_notice"


def _enable(api) -> None:
    admin_services(api).server_notices.config = ServerNoticesConfig(enabled=True)


async def test_off_by_default_and_admin_only(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    body = {"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "hi"}}
    await assert_admin_only(api, "POST", NOTICE, body, user=alice)
    r = await admin.post(NOTICE, body)
    assert r.status == 400 and "not enabled" in r.body["error"]


async def test_notice_arrives_in_a_tagged_room_reused_until_left(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    _enable(api)
    r = await admin.post(NOTICE, {"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "Welcome"}})
    assert r.status == 200, r
    first = r["event_id"]
    sync = await alice.sync()
    [(room_id, invited)] = sync["rooms"]["invite"].items()
    names = [e["content"].get("name") for e in invited["invite_state"]["events"] if e["type"] == "m.room.name"]
    assert names == ["Server Notices"]
    await alice.join(room_id)
    r = await admin.post(NOTICE, {"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "Again"}})
    second = r["event_id"]
    sync = await alice.sync()
    room = sync["rooms"]["join"][room_id]
    bodies = [e["content"].get("body") for e in room["timeline"]["events"] if e["event_id"] in (first, second)]
    assert bodies == ["Welcome", "Again"]
    r = await alice.get(f"/_matrix/client/v3/user/{quote(alice.user_id)}/rooms/{room_id}/tags")
    assert "m.server_notice" in r["tags"], r
    # The user may read, not reply.
    r = await alice.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"})
    assert r.status == 403
    # After leaving, the next notice opens a new room.
    assert (await alice.post(f"/_matrix/client/v3/rooms/{room_id}/leave", {})).status == 200
    r = await admin.post(NOTICE, {"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "New"}})
    assert r.status == 200
    event = await api.services.events.get_event(r["event_id"])
    assert event.room_id != room_id
    # The system user cannot log in.
    assert (await api.login("server", "")).status in (400, 403)


async def test_refusals(api):
    admin = await make_admin(api)
    _enable(api)
    for body in ({}, {"user_id": "@alice:test.local"}, {"user_id": 5, "content": {}},
                 {"user_id": "@nobody:test.local", "content": {}},
                 {"user_id": "@someone:elsewhere.example", "content": {}},
                 {"user_id": admin.user_id, "content": "text"}):
        r = await admin.post(NOTICE, body)
        assert 400 <= r.status < 500, (body, r)
    # A regular account holding the system user's name is never used.
    await api.register("server")
    r = await admin.post(NOTICE, {"user_id": admin.user_id, "content": {"msgtype": "m.text", "body": "x"}})
    assert r.status == 400 and "regular account" in r.body["error"]
