"""Device management: list, get, rename, delete (with user-interactive auth).

Spec: https://spec.matrix.org/v1.19/client-server-api/#device-management
"""

from __future__ import annotations

DEVICES = "/_matrix/client/v3/devices"
DELETE_DEVICES = "/_matrix/client/v3/delete_devices"
WHOAMI = "/_matrix/client/v3/account/whoami"

PW = "correct horse battery"


def _password_auth(user: str, password: str = PW, session: str | None = None) -> dict:
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}
    if session:
        auth["session"] = session
    return auth


async def _device_ids(user) -> list[str]:
    r = await user.get(DEVICES)
    assert r.status == 200
    return sorted(d["device_id"] for d in r["devices"])


async def test_list_and_get_devices(api):
    alice = await api.register("alice")
    phone = await api.login("alice", device_id="PHONE", initial_device_display_name="Phone")
    r = await alice.get(DEVICES)
    assert r.status == 200
    by_id = {d["device_id"]: d for d in r["devices"]}
    assert set(by_id) == {alice.device_id, "PHONE"}
    assert by_id["PHONE"]["display_name"] == "Phone"
    for device in r["devices"]:
        assert isinstance(device.get("last_seen_ts", 0), int)

    one = await alice.get(f"{DEVICES}/PHONE")
    assert one.status == 200
    assert one["device_id"] == "PHONE"
    assert one["display_name"] == "Phone"
    # Devices of other users are invisible.
    bob = await api.register("bob")
    assert await _device_ids(bob) == [bob.device_id]
    r = await bob.get(f"{DEVICES}/PHONE")
    assert r.status == 404
    assert r.errcode == "M_NOT_FOUND"
    assert phone["device_id"] == "PHONE"


async def test_device_list_is_accepted_by_matrix_nio(api):
    # matrix-nio validates /devices against its own schema, which requires every
    # field (nullable), as Synapse sends them: an unnamed device must pass too.
    import jsonschema
    from nio.schemas import Schemas

    alice = await api.register("alice")
    await api.login("alice", device_id="PHONE", initial_device_display_name="Phone")
    r = await alice.get(DEVICES)
    assert r.status == 200
    jsonschema.validate(r.body, Schemas.devices)
    unnamed = next(d for d in r["devices"] if d["device_id"] == alice.device_id)
    assert unnamed["display_name"] is None


async def test_unknown_devices_and_missing_tokens(api):
    alice = await api.register("alice")
    r = await alice.get(f"{DEVICES}/NOSUCHDEVICE")
    assert r.status == 404
    assert r.errcode == "M_NOT_FOUND"
    r = await alice.put(f"{DEVICES}/NOSUCHDEVICE", {"display_name": "x"})
    assert r.status == 404
    assert r.errcode == "M_NOT_FOUND"
    assert await _device_ids(alice) == [alice.device_id]
    for method, path in (("GET", DEVICES), ("GET", f"{DEVICES}/X"), ("PUT", f"{DEVICES}/X"),
                         ("DELETE", f"{DEVICES}/X"), ("POST", DELETE_DEVICES)):
        r = await api.request(method, path, {})
        assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), (method, path)


async def test_rename_device(api):
    alice = await api.register("alice")
    path = f"{DEVICES}/{alice.device_id}"
    r = await alice.put(path, {"display_name": "Work laptop"})
    assert r.status == 200
    assert r.body == {}
    assert (await alice.get(path))["display_name"] == "Work laptop"
    # Without display_name the name is unchanged.
    r = await alice.put(path, {})
    assert r.status == 200
    assert (await alice.get(path))["display_name"] == "Work laptop"
    # A wrong type is refused and changes nothing.
    r = await alice.put(path, {"display_name": 42})
    assert r.status == 400
    assert r.errcode == "M_BAD_JSON"
    assert (await alice.get(path))["display_name"] == "Work laptop"


async def test_delete_device_with_password(api):
    alice = await api.register("alice")
    phone = await api.login("alice", device_id="PHONE")
    # Without a body (as some clients send it) the server asks for auth too.
    r = await alice.delete(f"{DEVICES}/PHONE")
    assert r.status == 401
    assert r["flows"] == [{"stages": ["m.login.password"]}]
    first = await alice.delete(f"{DEVICES}/PHONE", {})
    assert first.status == 401
    assert first["flows"] == [{"stages": ["m.login.password"]}]
    assert isinstance(first["session"], str)
    assert await _device_ids(alice) == sorted([alice.device_id, "PHONE"])

    wrong = await alice.delete(f"{DEVICES}/PHONE", {"auth": _password_auth(alice.user_id, "nope", first["session"])})
    assert wrong.status == 401
    assert wrong.errcode == "M_FORBIDDEN"
    assert await _device_ids(alice) == sorted([alice.device_id, "PHONE"])
    assert (await api.request("GET", WHOAMI, token=phone["access_token"])).status == 200

    ok = await alice.delete(f"{DEVICES}/PHONE", {"auth": _password_auth(alice.user_id, PW, first["session"])})
    assert ok.status == 200, ok
    assert ok.body == {}
    assert await _device_ids(alice) == [alice.device_id]
    dead = await api.request("GET", WHOAMI, token=phone["access_token"])
    assert dead.status == 401
    assert dead.errcode == "M_UNKNOWN_TOKEN"


async def test_delete_edge_cases(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    # The spec: 200 when the device "was successfully removed, or had been removed previously".
    r = await alice.delete(f"{DEVICES}/GONE", {"auth": _password_auth("alice")})
    assert r.status == 200
    assert await _device_ids(alice) == [alice.device_id]

    # Another user's device is out of reach.
    r = await alice.delete(f"{DEVICES}/{bob.device_id}", {"auth": _password_auth("alice")})
    assert r.status in (200, 404)
    assert await _device_ids(bob) == [bob.device_id]
    assert (await bob.get(WHOAMI)).status == 200
    # Nor with the other user's password.
    r = await alice.delete(f"{DEVICES}/{alice.device_id}", {"auth": _password_auth("bob")})
    assert r.status == 401
    assert r.errcode == "M_FORBIDDEN"
    assert await _device_ids(alice) == [alice.device_id]

    # Deleting the device in use logs it out.
    r = await alice.delete(f"{DEVICES}/{alice.device_id}", {"auth": _password_auth("alice")})
    assert r.status == 200
    r = await alice.get(WHOAMI)
    assert r.status == 401
    assert r.errcode == "M_UNKNOWN_TOKEN"


async def test_delete_devices(api):
    alice = await api.register("alice")
    tokens = {}
    for device_id in ("ONE", "TWO", "THREE"):
        tokens[device_id] = (await api.login("alice", device_id=device_id))["access_token"]
    first = await alice.post(DELETE_DEVICES, {"devices": ["ONE", "TWO", "UNKNOWN"]})
    assert first.status == 401
    assert first["flows"] == [{"stages": ["m.login.password"]}]
    assert len(await _device_ids(alice)) == 4

    r = await alice.post(DELETE_DEVICES, {
        "devices": ["ONE", "TWO", "UNKNOWN"], "auth": _password_auth("alice", PW, first["session"]),
    })
    assert r.status == 200, r
    assert r.body == {}
    assert await _device_ids(alice) == sorted([alice.device_id, "THREE"])
    for device_id, status in (("ONE", 401), ("TWO", 401), ("THREE", 200)):
        assert (await api.request("GET", WHOAMI, token=tokens[device_id])).status == status

    for body, errcode in (
        ({"auth": _password_auth("alice")}, "M_MISSING_PARAM"),
        ({"devices": "ONE", "auth": _password_auth("alice")}, "M_BAD_JSON"),
        ({"devices": [1, 2], "auth": _password_auth("alice")}, "M_BAD_JSON"),
    ):
        r = await alice.post(DELETE_DEVICES, body)
        assert (r.status, r.errcode) == (400, errcode), body
    assert await _device_ids(alice) == sorted([alice.device_id, "THREE"])
