"""Admin whois, account suspension and account locking.

Spec v1.18: https://spec.matrix.org/v1.19/client-server-api/#server-administration
and Synapse's GET /_synapse/admin/v1/whois/{userId}.
"""

from __future__ import annotations

from urllib.parse import quote

WHOIS = "/_matrix/client/v1/admin/whois/"
SYNAPSE_WHOIS = "/_synapse/admin/v1/whois/"
SUSPEND = "/_matrix/client/v1/admin/suspend/"
LOCK = "/_matrix/client/v1/admin/lock/"
WHOAMI = "/_matrix/client/v3/account/whoami"


async def _admin(api):
    admin = await api.register("admin")
    await api.services.users.set_admin(admin.user_id, True)
    return admin


async def test_whois_lists_devices_and_connections(api):
    admin = await _admin(api)
    alice = await api.register("alice")
    assert (await alice.get(WHOAMI)).status == 200  # records the device as seen
    for path in (WHOIS, SYNAPSE_WHOIS, "/_matrix/client/v3/admin/whois/"):
        r = await admin.get(path + quote(alice.user_id))
        assert r.status == 200, (path, r)
        assert r["user_id"] == alice.user_id
        assert list(r["devices"]) == [alice.device_id]
        [session] = r["devices"][alice.device_id]["sessions"]
        [connection] = session["connections"]
        assert connection["ip"] == "127.0.0.1"
        assert isinstance(connection["last_seen"], int)
        assert "user_agent" in connection
    # The user may ask about themself, not about others.
    assert (await alice.get(WHOIS + quote(alice.user_id))).status == 200
    r = await alice.get(WHOIS + quote(admin.user_id))
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    # Unknown, remote and malformed users.
    assert (await admin.get(WHOIS + quote("@nobody:test.local"))).errcode == "M_NOT_FOUND"
    assert (await admin.get(WHOIS + quote("@alice:elsewhere.example"))).errcode == "M_NOT_FOUND"
    r = await admin.get(WHOIS + "not-a-user")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    assert (await api.request("GET", WHOIS + quote(alice.user_id))).errcode == "M_MISSING_TOKEN"


async def test_suspended_user_reads_and_leaves_but_cannot_send_join_or_invite(api):
    admin = await _admin(api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room()
    other = await bob.create_room(preset="public_chat")
    await alice.send_text(room, "before")
    assert (await alice.get(SUSPEND + quote(alice.user_id))).status == 403  # not an admin

    r = await admin.put(SUSPEND + quote(alice.user_id), {"suspended": True})
    assert r.status == 200 and r.body == {"suspended": True}
    assert (await admin.get(SUSPEND + quote(alice.user_id))).body == {"suspended": True}

    sent = await alice.put(f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"})
    assert sent.status == 403 and sent.errcode == "M_USER_SUSPENDED"
    state = await alice.put(f"/_matrix/client/v3/rooms/{room}/state/m.room.topic", {"topic": "x"})
    assert state.errcode == "M_USER_SUSPENDED"
    assert (await alice.post(f"/_matrix/client/v3/join/{other}", {})).errcode == "M_USER_SUSPENDED"
    assert (await alice.post(f"/_matrix/client/v3/rooms/{other}/join", {})).errcode == "M_USER_SUSPENDED"
    invite = await alice.post(f"/_matrix/client/v3/rooms/{room}/invite", {"user_id": bob.user_id})
    assert invite.errcode == "M_USER_SUSPENDED"
    assert (await alice.post("/_matrix/client/v3/createRoom", {})).errcode == "M_USER_SUSPENDED"
    # Reading works, and so does leaving.
    assert (await alice.get(WHOAMI)).status == 200
    messages = await alice.get(f"/_matrix/client/v3/rooms/{room}/messages", params={"dir": "b"})
    assert messages.status == 200
    assert any(e.get("content", {}).get("body") == "before" for e in messages["chunk"])
    assert (await alice.sync()).status == 200
    assert (await alice.post(f"/_matrix/client/v3/rooms/{room}/leave", {})).status == 200
    # Other users are not affected.
    await bob.send_text(other, "hi")

    r = await admin.put(SUSPEND + quote(alice.user_id), {"suspended": False})
    assert r.body == {"suspended": False}
    assert (await alice.post(f"/_matrix/client/v3/join/{other}", {})).status == 200


async def test_locked_user_is_soft_logged_out_everywhere(api):
    admin = await _admin(api)
    alice = await api.register("alice")
    r = await admin.put(LOCK + quote(alice.user_id), {"locked": True})
    assert r.status == 200 and r.body == {"locked": True}
    assert (await admin.get(LOCK + quote(alice.user_id))).body == {"locked": True}
    for method, path in (("GET", WHOAMI), ("GET", "/_matrix/client/v3/sync"),
                         ("GET", "/_matrix/client/v3/devices")):
        r = await alice.request(method, path)
        assert r.status == 401 and r.errcode == "M_USER_LOCKED", (path, r)
        assert r.body["soft_logout"] is True
    r = await admin.put(LOCK + quote(alice.user_id), {"locked": False})
    assert r.body == {"locked": False}
    assert (await alice.get(WHOAMI)).status == 200
    # A locked user may still log out.
    await admin.put(LOCK + quote(alice.user_id), {"locked": True})
    assert (await alice.post("/_matrix/client/v3/logout")).status == 200


async def test_suspend_and_lock_bad_input(api):
    admin = await _admin(api)
    alice = await api.register("alice")
    for base, key in ((SUSPEND, "suspended"), (LOCK, "locked")):
        for body in ({}, {key: "yes"}, {key: 1}, {key: None}):
            r = await admin.put(base + quote(alice.user_id), body)
            assert r.status == 400, (base, body, r)
        r = await admin.request("PUT", base + quote(alice.user_id), raw=b"nope")
        assert r.status == 400 and r.errcode == "M_NOT_JSON"
        r = await admin.put(base + quote("@nobody:test.local"), {key: True})
        assert r.status == 404 and r.errcode == "M_NOT_FOUND"
        r = await admin.put(base + quote("@alice:elsewhere.example"), {key: True})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
        r = await admin.get(base + "garbage")
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
        r = await alice.put(base + quote(alice.user_id), {key: False})
        assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    # Nothing was stored.
    user = await api.services.users.get_user(alice.user_id)
    assert not user.suspended and not user.locked
