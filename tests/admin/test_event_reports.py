"""Event reports as synapse-admin lists them: Synapse's docs/admin_api/event_reports.md."""

from __future__ import annotations

from tests.admin.helpers import V1, assert_admin_only, make_admin

REPORT_FIELDS = {"id", "received_ts", "room_id", "name", "event_id", "user_id", "reason", "score", "sender",
                 "canonical_alias"}


async def test_event_reports_list_get_delete(api):
    admin = await make_admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat", name="Kitchen")
    await bob.join(room)
    event_id = await alice.send_text(room, "spam")
    r = await bob.post(f"/_matrix/client/v3/rooms/{room}/report/{event_id}", {"reason": "spam", "score": -100})
    assert r.status == 200

    await assert_admin_only(api, "GET", V1 + "/event_reports", user=bob)
    r = await admin.get(V1 + "/event_reports", params={"from": "0", "limit": "10", "dir": "b"})
    assert r.status == 200 and r["total"] == 1
    [report] = r["event_reports"]
    assert REPORT_FIELDS <= set(report)
    assert report["event_id"] == event_id and report["sender"] == alice.user_id
    assert report["user_id"] == bob.user_id and report["name"] == "Kitchen"
    await assert_admin_only(api, "GET", f"{V1}/event_reports/{report['id']}", user=bob)
    r = await admin.get(f"{V1}/event_reports/{report['id']}")
    assert r.status == 200 and r["event_json"]["event_id"] == event_id
    assert (await admin.delete(f"{V1}/event_reports/{report['id']}")).status == 200
    assert (await admin.get(f"{V1}/event_reports/{report['id']}")).errcode == "M_NOT_FOUND"
    assert (await admin.get(f"{V1}/event_reports/not-a-number")).status == 400
