"""Profiles: whole profile, fields, custom fields, and their echo into room membership.

Spec: https://spec.matrix.org/v1.19/client-server-api/#profiles
"""

from __future__ import annotations

import json
from urllib.parse import quote

PROFILE = "/_matrix/client/v3/profile"


def _path(user_id: str, field: str | None = None) -> str:
    path = f"{PROFILE}/{quote(user_id)}"
    return f"{path}/{quote(field)}" if field else path


async def _member_content(user, room_id: str, user_id: str) -> dict:
    r = await user.get(f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{quote(user_id)}")
    assert r.status == 200, r
    return r.body


async def test_profile_lookups(api):
    alice = await api.register("alice")
    # Readable without authentication.
    r = await api.request("GET", _path(alice.user_id))
    assert r.status == 200
    assert r.body == {"displayname": "alice"}
    r = await api.request("GET", _path(alice.user_id, "displayname"))
    assert r.status == 200
    assert r.body == {"displayname": "alice"}
    r = await api.request("GET", _path(alice.user_id, "avatar_url"))
    assert r.status == 404
    assert r.errcode == "M_NOT_FOUND"

    # Unknown users and malformed user ids.
    for path in (_path("@nobody:test.local"), _path("@nobody:test.local", "displayname")):
        r = await api.request("GET", path)
        assert r.status == 404, path
        assert r.errcode == "M_NOT_FOUND"
    for user_id in ("alice", "@:test.local", "@alice"):
        r = await api.request("GET", _path(user_id))
        assert r.status in (400, 404), user_id
        assert r.errcode in ("M_INVALID_PARAM", "M_NOT_FOUND"), user_id
    r = await alice.put(_path("not-a-user", "displayname"), {"displayname": "x"})
    assert r.status in (400, 403)
    assert (await api.request("GET", _path(alice.user_id))).body == {"displayname": "alice"}


async def test_set_displayname_and_avatar(api):
    alice = await api.register("alice")
    r = await alice.put(_path(alice.user_id, "displayname"), {"displayname": "Alice Liddell"})
    assert r.status == 200
    assert r.body == {}
    r = await alice.put(_path(alice.user_id, "avatar_url"), {"avatar_url": "mxc://test.local/abc"})
    assert r.status == 200
    assert (await api.request("GET", _path(alice.user_id, "displayname"))).body == {"displayname": "Alice Liddell"}
    assert (await api.request("GET", _path(alice.user_id, "avatar_url"))).body == {"avatar_url": "mxc://test.local/abc"}
    assert (await api.request("GET", _path(alice.user_id))).body == {
        "displayname": "Alice Liddell", "avatar_url": "mxc://test.local/abc",
    }

    # Only alice may change her profile.
    bob = await api.register("bob")
    for method, body in (("PUT", {"displayname": "Mallory"}), ("DELETE", None)):
        r = await bob.request(method, _path(alice.user_id, "displayname"), body)
        assert r.status == 403, method
        assert r.errcode == "M_FORBIDDEN"
    r = await api.request("PUT", _path(alice.user_id, "displayname"), {"displayname": "Mallory"})
    assert r.status == 401
    assert r.errcode == "M_MISSING_TOKEN"
    assert (await api.request("GET", _path(alice.user_id))).body == {
        "displayname": "Alice Liddell", "avatar_url": "mxc://test.local/abc",
    }


async def test_delete_fields(api):
    alice = await api.register("alice")
    await alice.put(_path(alice.user_id, "avatar_url"), {"avatar_url": "mxc://test.local/abc"})
    r = await alice.delete(_path(alice.user_id, "displayname"))
    assert r.status == 200
    assert r.body == {}
    r = await api.request("GET", _path(alice.user_id, "displayname"))
    assert r.status == 404
    assert r.errcode == "M_NOT_FOUND"
    assert (await api.request("GET", _path(alice.user_id))).body == {"avatar_url": "mxc://test.local/abc"}
    # Deleting a field that is not set succeeds too.
    r = await alice.delete(_path(alice.user_id, "org.example.never_set"))
    assert r.status == 200


async def test_custom_field(api):
    alice = await api.register("alice")
    value = {"pronouns": ["she", "her"], "n": 3}
    r = await alice.put(_path(alice.user_id, "org.example.info"), {"org.example.info": value})
    assert r.status == 200
    r = await alice.put(_path(alice.user_id, "m.tz"), {"m.tz": "Europe/London"})
    assert r.status == 200
    assert (await api.request("GET", _path(alice.user_id, "org.example.info"))).body == {"org.example.info": value}
    assert (await api.request("GET", _path(alice.user_id))).body == {
        "displayname": "alice", "org.example.info": value, "m.tz": "Europe/London",
    }
    r = await alice.delete(_path(alice.user_id, "org.example.info"))
    assert r.status == 200
    assert (await api.request("GET", _path(alice.user_id, "org.example.info"))).status == 404
    assert (await api.request("GET", _path(alice.user_id))).body == {"displayname": "alice", "m.tz": "Europe/London"}


async def test_bad_profile_updates_change_nothing(api):
    alice = await api.register("alice")
    cases = [
        # The body must hold the key named in the path.
        ("displayname", {"avatar_url": "mxc://a/b"}, "M_MISSING_PARAM"),
        ("displayname", {"displayname": 5}, "M_BAD_JSON"),
        ("displayname", {"displayname": "x" * 1000}, None),
        ("avatar_url", {"avatar_url": ["mxc://a/b"]}, "M_BAD_JSON"),
        # keyName must follow the grammar: displayname, avatar_url, m.tz or a namespaced name.
        ("Not A Key", {"Not A Key": 1}, "M_INVALID_PARAM"),
        ("nonamespace", {"nonamespace": 1}, "M_INVALID_PARAM"),
        # Keys over 255 bytes are refused with M_KEY_TOO_LARGE.
        ("org.example." + "k" * 300, {"org.example." + "k" * 300: 1}, "M_KEY_TOO_LARGE"),
        # The whole profile must stay under 64 KiB.
        ("org.example.big", {"org.example.big": "x" * 70_000}, "M_PROFILE_TOO_LARGE"),
    ]
    for field, body, errcode in cases:
        r = await alice.put(_path(alice.user_id, field), body)
        assert r.status == 400, (field, r)
        if errcode:
            assert r.errcode == errcode, (field, r)
        else:
            assert r.errcode is not None
    r = await alice.put(_path(alice.user_id, "displayname"), raw=b"{not json")
    assert (r.status, r.errcode) == (400, "M_NOT_JSON")
    assert (await api.request("GET", _path(alice.user_id))).body == {"displayname": "alice"}


async def test_many_fields_cannot_exceed_the_profile_limit(api):
    alice = await api.register("alice")
    chunk = "x" * 20_000
    for i in range(3):
        r = await alice.put(_path(alice.user_id, f"org.example.f{i}"), {f"org.example.f{i}": chunk})
        assert r.status == 200, i
    r = await alice.put(_path(alice.user_id, "org.example.f3"), {"org.example.f3": chunk})
    assert r.status == 400
    assert r.errcode == "M_PROFILE_TOO_LARGE"
    profile = (await api.request("GET", _path(alice.user_id))).body
    assert "org.example.f3" not in profile
    assert len(json.dumps(profile).encode()) < 65_536
    # Replacing a field counts its new size, not old plus new.
    r = await alice.put(_path(alice.user_id, "org.example.f2"), {"org.example.f2": chunk + "y"})
    assert r.status == 200


async def test_profile_changes_update_member_events(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room()
    other_room = await alice.create_room()
    await alice.invite(room, bob.user_id)
    await bob.join(room)
    left_room = await alice.create_room()
    r = await alice.post(f"/_matrix/client/v3/rooms/{left_room}/leave", {})
    assert r.status == 200

    r = await alice.put(_path(alice.user_id, "displayname"), {"displayname": "Alice L."})
    assert r.status == 200
    r = await alice.put(_path(alice.user_id, "avatar_url"), {"avatar_url": "mxc://test.local/pic"})
    assert r.status == 200
    for room_id in (room, other_room):
        content = await _member_content(alice, room_id, alice.user_id)
        assert content["membership"] == "join"
        assert content["displayname"] == "Alice L."
        assert content["avatar_url"] == "mxc://test.local/pic"
    # Other members see it; bob's own member event is untouched.
    assert (await _member_content(bob, room, alice.user_id))["displayname"] == "Alice L."
    assert (await _member_content(bob, room, bob.user_id)).get("displayname") == "bob"
    # A room alice left keeps her leave event.
    r = await api.services.state.get_rooms_for_user(alice.user_id)
    assert r[left_room][0] == "leave"

    r = await alice.delete(_path(alice.user_id, "avatar_url"))
    assert r.status == 200
    content = await _member_content(alice, room, alice.user_id)
    assert "avatar_url" not in content
    assert content["displayname"] == "Alice L."

    # Custom fields do not send member events.
    before = await alice.get(f"/_matrix/client/v3/rooms/{room}/state")
    r = await alice.put(_path(alice.user_id, "m.tz"), {"m.tz": "Europe/Paris"})
    assert r.status == 200
    after = await alice.get(f"/_matrix/client/v3/rooms/{room}/state")
    assert sorted(e["event_id"] for e in before.body) == sorted(e["event_id"] for e in after.body)

