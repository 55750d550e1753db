"""Account deactivation, and the empty 3PID and bridge lists Element's settings ask for."""

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery"


def _password_auth(user, session=None):
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": PASSWORD}
    if session:
        auth["session"] = session
    return auth


async def test_deactivation_needs_the_password_then_locks_the_account_out(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await bob.create_room(invite=[alice.user_id])
    await alice.join(room)
    other_device = await api.login("alice")
    assert other_device.status == 200

    first = await alice.post(f"{V3}/account/deactivate", {})
    assert first.status == 401 and first["flows"] == [{"stages": ["m.login.password"]}]
    wrong = await alice.post(f"{V3}/account/deactivate", {"auth": {
        **_password_auth(alice, first["session"]), "password": "wrong"}})
    assert wrong.status == 401 and wrong.errcode == "M_FORBIDDEN"
    assert (await alice.get(f"{V3}/account/whoami")).status == 200

    done = await alice.post(f"{V3}/account/deactivate", {"auth": _password_auth(alice, first["session"])})
    assert done.status == 200, done
    assert done["id_server_unbind_result"] == "success"

    # Every token is dead, and the password no longer logs in.
    assert (await alice.get(f"{V3}/account/whoami")).errcode == "M_UNKNOWN_TOKEN"
    r = await api.request("GET", f"{V3}/account/whoami", token=other_device["access_token"])
    assert r.errcode == "M_UNKNOWN_TOKEN"
    assert (await api.login("alice")).status == 403
    # Alice left the room: bob sees her leave.
    members = await bob.get(f"{V3}/rooms/{room}/joined_members")
    assert list(members["joined"]) == [bob.user_id]
    # The name cannot be registered again.
    again = await api.request("POST", f"{V3}/register", {
        "username": "alice", "password": "x", "auth": {"type": "m.login.dummy"}})
    assert again.status == 400 and again.errcode == "M_USER_IN_USE"


async def test_erase_clears_the_profile(api):
    alice = await api.register("alice")
    r = await alice.put(f"{V3}/profile/{alice.user_id}/displayname", {"displayname": "Alice A."})
    assert r.status == 200
    r = await alice.post(f"{V3}/account/deactivate", {"auth": _password_auth(alice), "erase": True})
    assert r.status == 200, r
    profile = await api.request("GET", f"{V3}/profile/{alice.user_id}")
    assert "displayname" not in profile.body


async def test_deactivate_bad_body(api):
    alice = await api.register("alice")
    r = await alice.post(f"{V3}/account/deactivate", {"erase": "yes"})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    assert (await alice.get(f"{V3}/account/whoami")).status == 200


async def test_threepids_and_protocols_are_empty(api):
    alice = await api.register("alice")
    assert (await alice.get(f"{V3}/account/3pid")).body == {"threepids": []}
    assert (await alice.get(f"{V3}/thirdparty/protocols")).body == {}
    assert (await api.request("GET", f"{V3}/account/3pid")).status == 401
