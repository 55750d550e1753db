"""POST /createRoom. Spec: https://spec.matrix.org/v1.19/client-server-api/#creation"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

CREATE = "/_matrix/client/v3/createRoom"


def state_path(room_id: str, event_type: str, state_key: str = "") -> str:
    return f"/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}"


async def state_content(user, room_id: str, event_type: str, state_key: str = "") -> dict | None:
    r = await user.get(state_path(room_id, event_type, state_key))
    if r.status == 404:
        return None
    assert r.status == 200, r
    return r.body


async def room_count(services) -> int:
    return await services.db.fetchval("SELECT count(*) FROM rooms")


def reference_event_id(pdu: dict) -> str:
    """Room version 4+ event id, computed here independently of the server's code.

    The create event's content survives redaction whole in v11+, so the
    redacted form is the PDU's top-level allow-list without signatures.
    """
    kept = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
            "depth", "prev_events", "auth_events", "origin_server_ts"}
    stripped = {k: v for k, v in pdu.items() if k in kept}
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha256(canonical).digest()
    return "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


# Room version 12 and the room id


async def test_default_room_version_is_12_with_room_id_from_create_event(api, services):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.get(state_path(room_id, "m.room.create"), params={"format": "event"})
    assert r.status == 200, r
    create = r.body
    assert create["content"]["room_version"] == "12"
    assert "creator" not in create["content"]  # v11+: the sender is the creator
    assert create["sender"] == alice.user_id
    assert room_id == "!" + create["event_id"][1:]
    assert create["room_id"] == room_id  # clients still get the room id

    stored = await services.events.get_event(create["event_id"])
    assert "room_id" not in stored.json
    assert reference_event_id(stored.json) == create["event_id"]
    assert stored.json["auth_events"] == [] and stored.json["prev_events"] == []


async def test_v12_power_levels_leave_the_creator_out(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    pl = await state_content(alice, room_id, "m.room.power_levels")
    assert alice.user_id not in pl.get("users", {})
    # The spec: tombstone must be above state_default in v12.
    assert pl["events"]["m.room.tombstone"] > pl.get("state_default", 50)
    # The creator can still do everything: change power levels.
    r = await alice.put(state_path(room_id, "m.room.power_levels"), {**pl, "ban": 60})
    assert r.status == 200, r


async def test_room_id_is_in_joined_rooms_and_creator_is_joined(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.get("/_matrix/client/v3/joined_rooms")
    assert r.status == 200 and r["joined_rooms"] == [room_id]
    member = await state_content(alice, room_id, "m.room.member", alice.user_id)
    assert member["membership"] == "join"


@pytest.mark.parametrize("version", ["10", "11"])
async def test_older_room_versions_list_creator_in_power_levels(api, version):
    alice = await api.register("alice")
    room_id = await alice.create_room(room_version=version)
    assert room_id.endswith(":test.local")
    create = await state_content(alice, room_id, "m.room.create")
    assert create["room_version"] == version
    if version == "10":
        assert create["creator"] == alice.user_id
    else:
        assert "creator" not in create
    pl = await state_content(alice, room_id, "m.room.power_levels")
    assert pl["users"] == {alice.user_id: 100}
    assert pl["events"]["m.room.tombstone"] == 100


async def test_unsupported_room_version(api, services):
    alice = await api.register("alice")
    for version in ("999", "", "12.5"):
        r = await alice.post(CREATE, {"room_version": version})
        assert r.status == 400, r
        assert r.errcode == "M_UNSUPPORTED_ROOM_VERSION"
    assert await room_count(services) == 0


async def test_creation_content_keys_are_kept_but_creator_and_version_overwritten(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(
        room_version="10",
        creation_content={"m.federate": False, "creator": "@mallory:test.local", "room_version": "1"},
    )
    create = await state_content(alice, room_id, "m.room.create")
    assert create["m.federate"] is False
    assert create["creator"] == alice.user_id
    assert create["room_version"] == "10"


# Presets


async def test_private_chat_preset(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="private_chat")
    assert (await state_content(alice, room_id, "m.room.join_rules"))["join_rule"] == "invite"
    assert (await state_content(alice, room_id, "m.room.history_visibility"))["history_visibility"] == "shared"
    assert (await state_content(alice, room_id, "m.room.guest_access"))["guest_access"] == "can_join"


async def test_public_chat_preset(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat")
    assert (await state_content(alice, room_id, "m.room.join_rules"))["join_rule"] == "public"
    assert (await state_content(alice, room_id, "m.room.history_visibility"))["history_visibility"] == "shared"
    assert (await state_content(alice, room_id, "m.room.guest_access"))["guest_access"] == "forbidden"


async def test_visibility_picks_the_preset_when_none_given(api):
    alice = await api.register("alice")
    public = await alice.create_room(visibility="public")
    private = await alice.create_room(visibility="private")
    default = await alice.create_room()
    assert (await state_content(alice, public, "m.room.join_rules"))["join_rule"] == "public"
    assert (await state_content(alice, private, "m.room.join_rules"))["join_rule"] == "invite"
    assert (await state_content(alice, default, "m.room.join_rules"))["join_rule"] == "invite"


async def test_visibility_public_is_recorded_for_the_directory(api, services):
    alice = await api.register("alice")
    public = await alice.create_room(visibility="public", preset="private_chat")
    private = await alice.create_room(preset="public_chat")
    rows = dict(await services.db.fetch("SELECT room_id, is_public FROM rooms"))
    assert rows == {public: True, private: False}
    # The preset, not the visibility, decides the join rule.
    assert (await state_content(alice, public, "m.room.join_rules"))["join_rule"] == "invite"
    assert (await state_content(alice, private, "m.room.join_rules"))["join_rule"] == "public"


async def test_trusted_private_chat_v12_makes_invitees_additional_creators(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(
        preset="trusted_private_chat", invite=[bob.user_id, carol.user_id],
        creation_content={"additional_creators": [carol.user_id]},
    )
    create = await state_content(alice, room_id, "m.room.create")
    assert sorted(create["additional_creators"]) == sorted([bob.user_id, carol.user_id])
    pl = await state_content(alice, room_id, "m.room.power_levels")
    assert bob.user_id not in pl.get("users", {}) and alice.user_id not in pl.get("users", {})
    assert (await state_content(alice, room_id, "m.room.join_rules"))["join_rule"] == "invite"
    assert (await state_content(alice, room_id, "m.room.guest_access"))["guest_access"] == "can_join"
    # As a creator bob may change power levels once joined.
    await bob.join(room_id)
    r = await bob.put(state_path(room_id, "m.room.power_levels"), {**pl, "kick": 75})
    assert r.status == 200, r


async def test_trusted_private_chat_before_v12_gives_invitees_creator_power(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], room_version="11")
    pl = await state_content(alice, room_id, "m.room.power_levels")
    assert pl["users"] == {alice.user_id: 100, bob.user_id: 100}
    create = await state_content(alice, room_id, "m.room.create")
    assert "additional_creators" not in create


async def test_private_chat_invitees_get_no_extra_power(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="private_chat", invite=[bob.user_id])
    create = await state_content(alice, room_id, "m.room.create")
    assert "additional_creators" not in create
    pl = await state_content(alice, room_id, "m.room.power_levels")
    assert bob.user_id not in pl.get("users", {})


# Name, topic, initial state, power level override


async def test_name_and_topic(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(name="Family", topic="Dinner plans")
    assert await state_content(alice, room_id, "m.room.name") == {"name": "Family"}
    topic = await state_content(alice, room_id, "m.room.topic")
    assert topic["topic"] == "Dinner plans"
    assert topic["m.topic"] == [{"mimetype": "text/plain", "body": "Dinner plans"}]


async def test_no_name_no_topic_means_no_such_state(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    assert (await alice.get(state_path(room_id, "m.room.name"))).status == 404
    assert (await alice.get(state_path(room_id, "m.room.topic"))).status == 404


async def test_name_overrides_initial_state_name(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(
        name="Winner",
        initial_state=[{"type": "m.room.name", "content": {"name": "Loser"}}],
    )
    assert await state_content(alice, room_id, "m.room.name") == {"name": "Winner"}


async def test_initial_state_overrides_preset_join_rules(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(
        preset="private_chat",
        initial_state=[
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "public"}},
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
            {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
        ],
    )
    assert (await state_content(alice, room_id, "m.room.join_rules"))["join_rule"] == "public"
    assert (await state_content(alice, room_id, "m.room.history_visibility"))["history_visibility"] == "joined"
    assert await state_content(alice, room_id, "org.example.custom", "k") == {"x": 1}
    # Only one join rules event was sent: the override, not the preset's.
    r = await alice.get(f"/_matrix/client/v3/rooms/{room_id}/messages", params={"dir": "f", "limit": "50"})
    join_rules = [e for e in r["chunk"] if e["type"] == "m.room.join_rules"]
    assert len(join_rules) == 1
    await bob.join(room_id)  # the room really is public


async def test_power_levels_in_initial_state(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(
        room_version="11",
        initial_state=[{
            "type": "m.room.power_levels", "state_key": "",
            "content": {"users": {alice.user_id: 100, bob.user_id: 42}, "events_default": 7, "invite": 0},
        }],
    )
    pl = await state_content(alice, room_id, "m.room.power_levels")
    assert pl["users"] == {alice.user_id: 100, bob.user_id: 42}
    assert pl["events_default"] == 7


async def test_power_level_content_override(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(
        preset="public_chat",
        power_level_content_override={"events_default": 20, "users": {bob.user_id: 20}},
    )
    pl = await state_content(alice, room_id, "m.room.power_levels")
    assert pl["events_default"] == 20
    assert pl["users"] == {bob.user_id: 20}
    assert pl["ban"] == 50  # untouched defaults remain
    carol = await api.register("carol")
    await carol.join(room_id)
    r = await carol.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
                        {"msgtype": "m.text", "body": "hi"})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    await bob.join(room_id)
    await bob.send_text(room_id, "I may speak")


# Invites


async def test_invite_with_is_direct_shows_in_invitee_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(invite=[bob.user_id], is_direct=True, name="DM")
    sync = await bob.sync()
    invite = sync["rooms"]["invite"][room_id]
    events = invite["invite_state"]["events"]
    mine = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert len(mine) == 1
    assert mine[0]["content"]["membership"] == "invite"
    assert mine[0]["content"]["is_direct"] is True
    assert mine[0]["sender"] == alice.user_id
    assert {"type": "m.room.name", "state_key": "", "sender": alice.user_id,
            "content": {"name": "DM"}} in events
    member = await state_content(alice, room_id, "m.room.member", bob.user_id)
    assert member["membership"] == "invite" and member["is_direct"] is True


async def test_invite_without_is_direct(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(invite=[bob.user_id])
    member = await state_content(alice, room_id, "m.room.member", bob.user_id)
    assert member["membership"] == "invite"
    assert "is_direct" not in member


async def test_invalid_invitee_is_refused_before_anything_is_created(api, services):
    alice = await api.register("alice")
    for invitee in ("not-a-user", "@no-server", "#alias:test.local"):
        r = await alice.post(CREATE, {"invite": [invitee]})
        assert r.status == 400, r
        assert r.errcode in ("M_INVALID_PARAM", "M_BAD_JSON")
    assert await room_count(services) == 0


# Aliases


async def test_room_alias_name(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(room_alias_name="family")
    r = await api.request("GET", "/_matrix/client/v3/directory/room/%23family:test.local",
                          token=alice.access_token)
    assert r.status == 200, r
    assert r["room_id"] == room_id
    assert r["servers"] == ["test.local"]
    assert await state_content(alice, room_id, "m.room.canonical_alias") == {"alias": "#family:test.local"}


async def test_taken_alias_is_refused_without_creating_a_room(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    await alice.create_room(room_alias_name="family")
    before = await room_count(services)
    r = await bob.post(CREATE, {"room_alias_name": "family"})
    assert r.status == 400, r
    assert r.errcode == "M_ROOM_IN_USE"
    assert await room_count(services) == before


async def test_invalid_alias_name(api, services):
    alice = await api.register("alice")
    # The alias grammar allows any localpart but for ':' and NUL; the whole
    # alias must fit in 255 bytes.
    for localpart in ("has:colon", "nul\u0000", "x" * 250):
        r = await alice.post(CREATE, {"room_alias_name": localpart})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    assert await room_count(services) == 0


# Malformed requests


BAD_BODIES = [
    {"name": 5},
    {"topic": ["x"]},
    {"visibility": "secret"},
    {"preset": "party"},
    {"invite": "@bob:test.local"},
    {"invite": [5]},
    {"is_direct": "yes"},
    {"initial_state": [{"type": "m.room.name", "content": "x"}]},
    {"initial_state": {"type": "m.room.name"}},
    {"creation_content": []},
    {"power_level_content_override": 1},
    {"room_version": 12},
    {"room_alias_name": 3},
]


async def test_bad_types_are_bad_json(api, services):
    alice = await api.register("alice")
    for body in BAD_BODIES:
        r = await alice.post(CREATE, body)
        assert r.status == 400 and r.errcode == "M_BAD_JSON", (body, r)
    # A missing key inside initial_state may be named as such.
    r = await alice.post(CREATE, {"initial_state": [{"content": {}}]})
    assert r.status == 400 and r.errcode in ("M_BAD_JSON", "M_MISSING_PARAM"), r
    assert await room_count(services) == 0


async def test_body_not_json(api, services):
    alice = await api.register("alice")
    r = await api.request("POST", CREATE, raw=b"{not json", token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await api.request("POST", CREATE, raw=b"[1, 2]", token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    assert await room_count(services) == 0


async def test_empty_body_creates_a_private_room(api):
    alice = await api.register("alice")
    r = await api.request("POST", CREATE, raw=b"{}", token=alice.access_token)
    assert r.status == 200, r
    assert (await state_content(alice, r["room_id"], "m.room.join_rules"))["join_rule"] == "invite"


async def test_requires_authentication(api):
    r = await api.request("POST", CREATE, {})
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


# Initial state the rules refuse: nothing may be left behind.


async def event_count(services) -> int:
    return await services.db.fetchval("SELECT count(*) FROM events")


async def test_initial_state_the_rules_refuse_is_invalid_room_state(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    for body in (
        # The creator (v11: an ordinary user) gives away the power to set the join rules.
        {"room_version": "11", "power_level_content_override": {"users": {}}},
        {"room_version": "11", "name": "x", "power_level_content_override": {"events": {"m.room.name": 101}}},
        # Room version 10+: power levels must be integers.
        {"power_level_content_override": {"ban": "50"}},
        {"initial_state": [{"type": "m.room.create", "content": {}}]},
        {"initial_state": [{"type": "m.room.member", "state_key": bob.user_id, "content": {"membership": "join"}}]},
    ):
        r = await alice.post(CREATE, body)
        assert r.status == 400 and r.errcode == "M_INVALID_ROOM_STATE", (body, r)
    assert await room_count(services) == 0
    assert await event_count(services) == 0
    assert (await alice.get("/_matrix/client/v3/joined_rooms"))["joined_rooms"] == []


async def test_bad_initial_state_content_stores_nothing(api, services):
    alice = await api.register("alice")
    r = await alice.post(CREATE, {"initial_state": [{"type": "org.example.big", "content": {"x": "y" * 70_000}}]})
    assert r.status == 413 and r.errcode == "M_TOO_LARGE", r
    r = await alice.post(CREATE, {"initial_state": [{"type": "org.example.f", "content": {"x": 1.5}}]})
    assert r.status == 400 and r.errcode == "M_BAD_JSON", r
    r = await alice.post(CREATE, {"creation_content": {"x": 0.5}})
    assert r.status == 400 and r.errcode == "M_BAD_JSON", r
    assert await room_count(services) == 0
    assert await event_count(services) == 0


async def test_invite_list_with_the_creator_and_duplicates(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(invite=[alice.user_id, bob.user_id, bob.user_id])
    assert (await state_content(alice, room_id, "m.room.member", alice.user_id))["membership"] == "join"
    assert (await state_content(alice, room_id, "m.room.member", bob.user_id))["membership"] == "invite"
    r = await alice.get(f"/_matrix/client/v3/rooms/{room_id}/messages", params={"dir": "f", "limit": "50"})
    invites = [e for e in r["chunk"] if e["type"] == "m.room.member" and e["content"]["membership"] == "invite"]
    assert len(invites) == 1


@pytest.mark.parametrize("config_overrides", [{"federation": {"enabled": False}}])
async def test_invitee_of_another_server_is_refused_before_anything_is_created(api, services):
    # With federation off, such an invite could never be delivered.
    alice = await api.register("alice")
    r = await alice.post(CREATE, {"invite": ["@bob:elsewhere.example"]})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await room_count(services) == 0
