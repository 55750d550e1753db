"""Room summaries (MSC3266), /timestamp_to_event and the unsupported /initialSync."""

from __future__ import annotations

import time

import pytest

SUMMARY = "/_matrix/client/v1/room_summary/"
UNSTABLE = "/_matrix/client/unstable/im.nheko.summary/summary/"


async def test_summary_of_a_public_room_for_a_stranger_and_a_member(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(
        preset="public_chat", name="Garden", topic="Plants", room_alias_name="garden",
        initial_state=[{"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                       {"type": "m.room.avatar", "content": {"url": "mxc://example.org/a"}}],
    )
    alias = f"#garden:{services.server_name}"
    for path in (SUMMARY + room_id, UNSTABLE + room_id, SUMMARY + alias.replace("#", "%23")):
        r = await bob.get(path, params={"via": services.server_name})
        assert r.status == 200, (path, r)
        assert r.body["room_id"] == room_id
        assert r.body["name"] == "Garden" and r.body["topic"] == "Plants"
        assert r.body["avatar_url"] == "mxc://example.org/a"
        assert r.body["canonical_alias"] == alias
        assert r.body["num_joined_members"] == 1
        assert r.body["join_rule"] == "public"
        assert r.body["room_version"] == "12"
        assert r.body["encryption"] == "m.megolm.v1.aes-sha2"
        assert r.body["guest_can_join"] is False and r.body["world_readable"] is False
        assert r.body["membership"] == "leave"
        assert "room_type" not in r.body
    r = await alice.get(SUMMARY + room_id)
    assert r["membership"] == "join"
    # without an account too
    r = await api.request("GET", SUMMARY + room_id)
    assert r.status == 200 and r["room_id"] == room_id, r


async def test_private_rooms_only_for_members_and_invitees(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(preset="private_chat", name="Secret", creation_content={"type": "m.space"})
    r = await bob.get(SUMMARY + room_id)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    await alice.invite(room_id, bob.user_id)
    r = await bob.get(SUMMARY + room_id)
    assert r.status == 200 and r["membership"] == "invite" and r["room_type"] == "m.space", r
    r = await api.request("GET", SUMMARY + room_id)
    assert r.status == 404, r
    # restricted: members of the allowed room may preview
    space = room_id
    await bob.join(space)
    restricted = await alice.create_room(room_version="11", initial_state=[{
        "type": "m.room.join_rules",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]},
    }])
    r = await bob.get(SUMMARY + restricted)
    assert r.status == 200 and r["join_rule"] == "restricted" and r["allowed_room_ids"] == [space], r
    r = await carol.get(SUMMARY + restricted)
    assert r.status == 404, r


async def test_world_readable_rooms_and_bad_input(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room(initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    r = await api.request("GET", SUMMARY + room_id)
    assert r.status == 200 and r["world_readable"] is True and r["join_rule"] == "invite", r
    r = await alice.get(SUMMARY + "nonsense")
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await alice.get(SUMMARY + f"%23nowhere:{services.server_name}")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    r = await alice.get(SUMMARY + f"!unknown:{services.server_name}")
    assert r.status == 404, r
    r = await api.request("GET", SUMMARY + room_id, token="bad-token")
    assert r.status == 401, r


TS = "/_matrix/client/v1/rooms/{}/timestamp_to_event"


async def test_timestamp_to_event(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room()
    first = await alice.send_text(room_id, "one")
    r = await alice.get(f"/_matrix/client/v3/rooms/{room_id}/event/{first}")
    first_ts = r["origin_server_ts"]
    r = await alice.get(TS.format(room_id), params={"ts": str(first_ts), "dir": "b"})
    assert r.status == 200 and r["event_id"] == first and r["origin_server_ts"] == first_ts, r
    r = await alice.get(TS.format(room_id), params={"ts": "0", "dir": "f"})
    assert r.status == 200 and r["origin_server_ts"] <= first_ts, r
    r = await alice.get(TS.format(room_id), params={"ts": str(int(time.time() * 1000) + 10**9), "dir": "f"})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
    r = await alice.get(TS.format(room_id), params={"ts": "0", "dir": "b"})
    assert r.status == 404, r
    for params, errcode in (({"dir": "f"}, "M_MISSING_PARAM"), ({"ts": "x", "dir": "f"}, "M_INVALID_PARAM"),
                            ({"ts": "1"}, "M_MISSING_PARAM"), ({"ts": "1", "dir": "up"}, "M_INVALID_PARAM")):
        r = await alice.get(TS.format(room_id), params=params)
        assert r.status == 400 and r.errcode == errcode, (params, r)
    r = await bob.get(TS.format(room_id), params={"ts": "0", "dir": "f"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    r = await alice.get(TS.format("!unknown:test"), params={"ts": "0", "dir": "f"})
    assert r.status == 404, r


@pytest.mark.parametrize("path", ["/_matrix/client/v3/rooms/!r:test/initialSync", "/_matrix/client/r0/initialSync"])
async def test_initial_sync_says_it_is_not_supported(api, path):
    alice = await api.register("alice")
    r = await alice.get(path)
    assert r.status == 404 and r.errcode == "M_UNRECOGNIZED", r
    assert "not supported" in r.body["error"]


# Discovery: the unstable feature flags Element checks, and /.well-known/matrix/support


async def test_versions_advertise_summaries_and_mutual_rooms(api):
    r = await api.request("GET", "/_matrix/client/versions")
    assert r["unstable_features"]["im.nheko.summary"] is True
    assert r["unstable_features"]["uk.half-shot.msc2666.query_mutual_rooms"] is True


async def test_support_is_404_until_configured(api):
    r = await api.request("GET", "/.well-known/matrix/support")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND", r


@pytest.mark.parametrize("config_overrides", [{"well_known": {"support": {
    "contacts": [{"matrix_id": "@peter:test.local", "email_address": "peter@example.org"},
                 {"email_address": "security@example.org", "role": "m.role.security"}],
    "support_page": "https://example.org/help",
}}}])
async def test_support_contacts_from_config(api):
    r = await api.request("GET", "/.well-known/matrix/support")
    assert r.status == 200, r
    assert r.body == {
        "contacts": [{"matrix_id": "@peter:test.local", "email_address": "peter@example.org", "role": "m.role.admin"},
                     {"email_address": "security@example.org", "role": "m.role.security"}],
        "support_page": "https://example.org/help",
    }


@pytest.mark.parametrize("support", [
    {"contacts": [{"role": "m.role.admin"}]},
    {"contacts": [{"matrix_id": "peter"}]},
    {"contacts": [{"email_address": "a@b", "colour": "red"}]},
    {"support_page": ""},
])
def test_bad_support_config_is_refused(tmp_path, support):
    from homeserver.config import ConfigError
    from tests.conftest import make_config
    with pytest.raises(ConfigError):
        make_config(tmp_path, "postgresql://unused", well_known={"support": support})
