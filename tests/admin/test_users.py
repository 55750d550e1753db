"""Users v2 and friends: Synapse's docs/admin_api/user_admin_api.md, as synapse-admin calls it."""

from __future__ import annotations

from tests.admin.helpers import DEVICE_FIELDS, USER_FIELDS, USER_LIST_FIELDS, V1, V2, assert_admin_only, \
    make_admin, q

WHOAMI = "/_matrix/client/v3/account/whoami"


async def test_server_version_needs_no_token(api):
    r = await api.request("GET", V1 + "/server_version")
    assert r.status == 200 and isinstance(r["server_version"], str)


async def test_every_user_endpoint_is_admin_only(api):
    alice = await api.register("alice")
    user = q(alice.user_id)
    for method, path, body in [
        ("GET", V2 + "/users", None),
        ("GET", f"{V2}/users/{user}", None),
        ("PUT", f"{V2}/users/{user}", {"displayname": "x"}),
        ("POST", f"{V1}/deactivate/{user}", {"erase": False}),
        ("POST", f"{V1}/reset_password/{user}", {"new_password": "another long password"}),
        ("GET", f"{V1}/users/{user}/admin", None),
        ("PUT", f"{V1}/users/{user}/admin", {"admin": True}),
        ("GET", f"{V1}/users/{user}/joined_rooms", None),
        ("GET", f"{V1}/users/{user}/pushers", None),
        ("GET", f"{V2}/users/{user}/devices", None),
        ("GET", f"{V2}/users/{user}/devices/{alice.device_id}", None),
        ("PUT", f"{V2}/users/{user}/devices/{alice.device_id}", {"display_name": "x"}),
        ("DELETE", f"{V2}/users/{user}/devices/{alice.device_id}", None),
        ("POST", f"{V2}/users/{user}/delete_devices", {"devices": [alice.device_id]}),
    ]:
        await assert_admin_only(api, method, path, body, user=alice)
    # Nothing was changed by the refused requests.
    assert (await alice.get(WHOAMI)).status == 200
    assert not (await api.services.users.get_user(alice.user_id)).is_admin


async def test_create_list_modify_deactivate_with_erase(api):
    admin = await make_admin(api)
    user_id = "@carol:test.local"
    # synapse-admin's create: PUT with the whole form.
    r = await admin.put(f"{V2}/users/{q(user_id)}", {
        "id": "carol", "displayname": "Carol", "password": "a long enough password", "admin": False,
        "threepids": [], "user_type": None,
    })
    assert r.status == 201, r
    assert USER_FIELDS <= set(r.body) and r["name"] == user_id and r["displayname"] == "Carol"
    assert r["admin"] is False and r["deactivated"] is False and r["user_type"] is None
    assert (await api.login("carol", "a long enough password")).status == 200

    r = await admin.get(V2 + "/users", params={"from": "0", "limit": "10", "order_by": "name", "dir": "f"})
    assert r.status == 200 and r["total"] == 2 and "next_token" not in r.body
    assert [u["name"] for u in r["users"]] == [admin.user_id, user_id]
    for user in r["users"]:
        assert USER_LIST_FIELDS <= set(user)
        assert isinstance(user["creation_ts"], int) and user["creation_ts"] < 10**11  # seconds, as Synapse's
    r = await admin.get(V2 + "/users", params={"limit": "1"})
    assert len(r["users"]) == 1 and r["next_token"] == "1" and r["total"] == 2
    r = await admin.get(V2 + "/users", params={"from": "1", "limit": "1"})
    assert [u["name"] for u in r["users"]] == [user_id] and "next_token" not in r.body
    r = await admin.get(V2 + "/users", params={"name": "caro"})
    assert [u["name"] for u in r["users"]] == [user_id]
    r = await admin.get(V2 + "/users", params={"user_id": "admin"})
    assert [u["name"] for u in r["users"]] == [admin.user_id]
    r = await admin.get(V2 + "/users", params={"order_by": "creation_ts", "dir": "b"})
    assert r["users"][0]["name"] == user_id

    # Modify: synapse-admin's edit sends the record back with its changes.
    record = (await admin.get(f"{V2}/users/{q(user_id)}")).body
    record.update(displayname="Carol C", admin=True, id=user_id, avatar_src=None)
    r = await admin.put(f"{V2}/users/{q(user_id)}", record)
    assert r.status == 200, r
    assert r["displayname"] == "Carol C" and r["admin"] is True
    assert (await admin.get(f"{V1}/users/{q(user_id)}/admin")).body == {"admin": True}
    r = await admin.put(f"{V2}/users/{q(user_id)}", {"password": "the new long password"})
    assert r.status == 200
    assert (await api.login("carol", "a long enough password")).status == 403
    assert (await api.login("carol", "the new long password")).status == 200

    # Deactivate with erase, as synapse-admin's delete does.
    room = await admin.create_room(preset="public_chat")
    carol = await api.login("carol", "the new long password")
    token = carol["access_token"]
    assert (await api.request("POST", f"/_matrix/client/v3/join/{room}", {}, token=token)).status == 200
    r = await admin.post(f"{V1}/deactivate/{q(user_id)}", {"erase": True})
    assert r.status == 200 and r.body == {"id_server_unbind_result": "success"}
    assert (await api.request("GET", WHOAMI, token=token)).status == 401
    r = await admin.get(f"{V2}/users/{q(user_id)}")
    assert r["deactivated"] is True and r["displayname"] is None and r["erased"] is True
    members = await api.services.state.get_members(room)
    assert members[user_id] == "leave"
    # Deactivated users are listed only when asked for.
    r = await admin.get(V2 + "/users")
    assert [u["name"] for u in r["users"]] == [admin.user_id]
    r = await admin.get(V2 + "/users", params={"deactivated": "true"})
    assert {u["name"] for u in r["users"]} == {admin.user_id, user_id}

    # Reactivation needs a password.
    r = await admin.put(f"{V2}/users/{q(user_id)}", {"deactivated": False})
    assert r.status == 400
    r = await admin.put(f"{V2}/users/{q(user_id)}", {"deactivated": False, "password": "back again password"})
    assert r.status == 200 and r["deactivated"] is False
    assert (await api.login("carol", "back again password")).status == 200


async def test_bad_input_is_a_400_not_a_500(api):
    admin = await make_admin(api)
    for params in ({"from": "-1"}, {"limit": "x"}, {"order_by": "password_hash"}, {"dir": "up"},
                   {"deactivated": "maybe"}):
        r = await admin.get(V2 + "/users", params=params)
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (params, r)
    r = await admin.get(f"{V2}/users/{q('@nobody:test.local')}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await admin.get(f"{V2}/users/{q('@someone:elsewhere.example')}")
    assert r.status == 400
    r = await admin.get(f"{V2}/users/not-a-user")
    assert r.status == 400
    r = await admin.put(f"{V2}/users/{q('@x:test.local')}", {"admin": "yes"})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await admin.put(f"{V2}/users/{q('@x:test.local')}", {"user_type": "wizard"})
    assert r.status == 400
    r = await admin.request("PUT", f"{V2}/users/{q('@x:test.local')}", raw=b"{not json")
    assert r.status == 400
    r = await admin.post(f"{V1}/reset_password/{q(admin.user_id)}", {})
    assert r.status == 400
    # An admin may not demote themself.
    r = await admin.put(f"{V1}/users/{q(admin.user_id)}/admin", {"admin": False})
    assert r.status == 400
    assert (await admin.get(f"{V1}/users/{q(admin.user_id)}/admin")).body == {"admin": True}


async def test_reset_password_and_admin_status(api):
    admin = await make_admin(api)
    bob = await api.register("bob")
    r = await admin.post(f"{V1}/reset_password/{q(bob.user_id)}", {"new_password": "bobs new password"})
    assert r.status == 200 and r.body == {}
    assert (await bob.get(WHOAMI)).status == 401  # logged out by default
    assert (await api.login("bob", "bobs new password")).status == 200
    bob2 = await api.login("bob", "bobs new password")
    r = await admin.post(f"{V1}/reset_password/{q(bob.user_id)}",
                         {"new_password": "and another one", "logout_devices": False})
    assert r.status == 200
    assert (await api.request("GET", WHOAMI, token=bob2["access_token"])).status == 200

    assert (await admin.get(f"{V1}/users/{q(bob.user_id)}/admin")).body == {"admin": False}
    assert (await admin.put(f"{V1}/users/{q(bob.user_id)}/admin", {"admin": True})).body == {}
    # The new admin's existing token is an admin's from the next request.
    r = await api.request("GET", V2 + "/users", token=bob2["access_token"])
    assert r.status == 200
    r = await admin.put(f"{V1}/users/{q(bob.user_id)}/admin", {"admin": False})
    assert (await api.request("GET", V2 + "/users", token=bob2["access_token"])).status == 403


async def test_devices_joined_rooms_and_pushers(api):
    admin = await make_admin(api)
    dan = await api.register("dan")
    assert (await dan.get(WHOAMI)).status == 200
    second = await api.login("dan")
    r = await admin.get(f"{V2}/users/{q(dan.user_id)}/devices")
    assert r.status == 200 and r["total"] == 2
    assert {d["device_id"] for d in r["devices"]} == {dan.device_id, second["device_id"]}
    for device in r["devices"]:
        assert DEVICE_FIELDS <= set(device) and device["user_id"] == dan.user_id

    path = f"{V2}/users/{q(dan.user_id)}/devices/{dan.device_id}"
    assert (await admin.put(path, {"display_name": "Dan's phone"})).status == 200
    r = await admin.get(path)
    assert r.status == 200 and r["display_name"] == "Dan's phone" and DEVICE_FIELDS <= set(r.body)
    assert (await admin.delete(path)).status == 200
    assert (await dan.get(WHOAMI)).status == 401
    assert (await admin.get(path)).errcode == "M_NOT_FOUND"
    r = await admin.post(f"{V2}/users/{q(dan.user_id)}/delete_devices", {"devices": [second["device_id"]]})
    assert r.status == 200
    assert (await admin.get(f"{V2}/users/{q(dan.user_id)}/devices")).body == {"devices": [], "total": 0}
    r = await admin.post(f"{V2}/users/{q(dan.user_id)}/delete_devices", {"devices": "all"})
    assert r.status == 400

    room = await admin.create_room()
    r = await admin.get(f"{V1}/users/{q(admin.user_id)}/joined_rooms")
    assert r.body == {"joined_rooms": [room], "total": 1}
    r = await admin.get(f"{V1}/users/{q(dan.user_id)}/pushers")
    assert r.body == {"pushers": [], "total": 0}


async def test_memberships_and_profile_removal(api):
    admin = await make_admin(api)
    eve = await api.register("eve")
    room = await admin.create_room(preset="public_chat")
    await eve.join(room)
    left = await admin.create_room(preset="public_chat")
    await eve.join(left)
    assert (await eve.post(f"/_matrix/client/v3/rooms/{left}/leave", {})).status == 200
    r = await admin.get(f"{V1}/users/{q(eve.user_id)}/memberships")
    assert r.body == {"memberships": {room: "join", left: "leave"}}
    await assert_admin_only(api, "GET", f"{V1}/users/{q(eve.user_id)}/memberships", user=eve)

    path = f"{V2}/users/{q(eve.user_id)}"
    r = await admin.put(path, {"displayname": "Eve", "avatar_url": "mxc://test.local/abc"})
    assert r["displayname"] == "Eve" and r["avatar_url"] == "mxc://test.local/abc"
    r = await admin.put(path, {"displayname": "", "avatar_url": ""})
    assert r["displayname"] is None and r["avatar_url"] is None
    assert (await admin.put(path, {"avatar_url": "https://example.org/a.png"})).status == 400
    r = await admin.put(path, {"user_type": "bot"})
    assert r["user_type"] == "bot"
    assert (await admin.put(path, {"user_type": None})).body["user_type"] is None


async def test_each_admin_action_is_logged(api, caplog):
    admin = await make_admin(api)
    frank = await api.register("frank")
    caplog.set_level("INFO", logger="homeserver.admin")
    await admin.post(f"{V1}/reset_password/{q(frank.user_id)}", {"new_password": "franks secret password"})
    await admin.put(f"{V1}/users/{q(frank.user_id)}/admin", {"admin": True})
    await admin.post(f"{V1}/deactivate/{q(frank.user_id)}", {})
    lines = [r.getMessage() for r in caplog.records if r.name == "homeserver.admin"]
    for action in ("reset_password", "set_admin", "deactivate"):
        assert any(f"admin={admin.user_id} action={action} target={frank.user_id}" in line for line in lines), lines
    assert not any("franks secret password" in line for line in lines)


async def test_locked_users_are_listed_only_when_asked_for(api):
    admin = await make_admin(api)
    gina = await api.register("gina")
    r = await admin.put(f"{V2}/users/{q(gina.user_id)}", {"locked": True})
    assert r.status == 200 and r["locked"] is True
    assert (await gina.get(WHOAMI)).status == 401  # locked out
    r = await admin.get(V2 + "/users")
    assert [u["name"] for u in r["users"]] == [admin.user_id]
    r = await admin.get(V2 + "/users", params={"locked": "true", "guests": "false", "admins": "false"})
    assert [u["name"] for u in r["users"]] == [gina.user_id] and r["users"][0]["locked"] is True
    assert (await admin.put(f"{V2}/users/{q(gina.user_id)}", {"locked": False})).body["locked"] is False
    assert (await gina.get(WHOAMI)).status == 200
