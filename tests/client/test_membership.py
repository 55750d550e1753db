"""Joining, inviting, leaving, kicking, banning, forgetting.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-membership
"""

from __future__ import annotations

from urllib.parse import quote

V3 = "/_matrix/client/v3"


def rooms(room_id: str, action: str) -> str:
    return f"{V3}/rooms/{room_id}/{action}"


async def membership_of(user, room_id: str, target: str) -> str | None:
    r = await user.get(f"{V3}/rooms/{room_id}/state/m.room.member/{target}")
    if r.status == 404:
        return None
    assert r.status == 200, r
    return r["membership"]


async def joined_rooms(user) -> list[str]:
    r = await user.get(f"{V3}/joined_rooms")
    assert r.status == 200, r
    return r["joined_rooms"]


async def event_count(services, room_id: str) -> int:
    return await services.db.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id)


# Joining


async def test_join_public_room_by_id(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    r = await bob.post(rooms(room_id, "join"), {})
    assert r.status == 200 and r.body == {"room_id": room_id}
    assert await membership_of(alice, room_id, bob.user_id) == "join"
    assert await joined_rooms(bob) == [room_id]


async def test_join_by_id_through_join_endpoint_with_reason(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    r = await bob.post(f"{V3}/join/{room_id}", {"reason": "hello"})
    assert r.status == 200 and r["room_id"] == room_id
    member = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}")
    assert member["membership"] == "join" and member["reason"] == "hello"


async def test_join_by_alias(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat", room_alias_name="pub")
    r = await bob.post(f"{V3}/join/{quote('#pub:test.local')}", {})
    assert r.status == 200, r
    assert r["room_id"] == room_id
    assert await joined_rooms(bob) == [room_id]


async def test_join_unknown_alias_is_404(api):
    bob = await api.register("bob")
    r = await bob.post(f"{V3}/join/{quote('#nowhere:test.local')}", {})
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_join_twice_is_idempotent(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    count = await event_count(services, room_id)
    await bob.join(room_id)
    assert await event_count(services, room_id) == count


async def test_join_invite_only_room_without_invite_is_forbidden(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="private_chat")
    count = await event_count(services, room_id)
    for path in (rooms(room_id, "join"), f"{V3}/join/{room_id}"):
        r = await bob.post(path, {})
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", r
    assert await event_count(services, room_id) == count
    assert await joined_rooms(bob) == []


async def test_join_unknown_room_is_404(api):
    bob = await api.register("bob")
    for room_id in ("!unknown:test.local", "!" + "A" * 43):
        r = await bob.post(rooms(room_id, "join"), {})
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", r
        r = await bob.post(f"{V3}/join/{room_id}", {})
        assert r.status == 404 and r.errcode == "M_NOT_FOUND", r


async def test_invalid_room_id_is_400(api):
    bob = await api.register("bob")
    for action in ("join", "leave", "forget"):
        r = await bob.post(rooms("not-a-room", action), {})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (action, r)
    r = await bob.post(rooms("not-a-room", "invite"), {"user_id": "@x:test.local"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await bob.post(f"{V3}/join/not-a-room", {})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r


async def test_join_body_must_be_an_object(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat")
    bob = await api.register("bob")
    r = await api.request("POST", rooms(room_id, "join"), raw=b"[]", token=bob.access_token)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await bob.post(rooms(room_id, "join"), {"reason": 5})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    assert await joined_rooms(bob) == []


# Inviting


async def test_invite_then_join(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="private_chat")
    r = await alice.post(rooms(room_id, "invite"), {"user_id": bob.user_id, "reason": "welcome"})
    assert r.status == 200 and r.body == {}
    sync = await bob.sync()
    assert room_id in sync["rooms"]["invite"]
    assert await joined_rooms(bob) == []
    await bob.join(room_id)
    assert await membership_of(alice, room_id, bob.user_id) == "join"


async def test_invite_needs_invite_power(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    # public_chat: invite level 50; bob joins with 0.
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    count = await event_count(services, room_id)
    r = await bob.post(rooms(room_id, "invite"), {"user_id": carol.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await event_count(services, room_id) == count
    assert await membership_of(alice, room_id, carol.user_id) is None
    # In a private chat the invite level is 0: every member may invite.
    private = await alice.create_room(preset="private_chat", invite=[bob.user_id])
    await bob.join(private)
    await bob.invite(private, carol.user_id)


async def test_invite_by_non_member_is_forbidden(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(preset="private_chat")
    r = await bob.post(rooms(room_id, "invite"), {"user_id": carol.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_invite_of_joined_or_banned_user_is_forbidden(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    r = await alice.post(rooms(room_id, "invite"), {"user_id": bob.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await alice.post(rooms(room_id, "ban"), {"user_id": carol.user_id})
    assert r.status == 200
    r = await alice.post(rooms(room_id, "invite"), {"user_id": carol.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await membership_of(alice, room_id, carol.user_id) == "ban"


async def test_invite_bad_requests(api):
    alice = await api.register("alice")
    room_id = await alice.create_room()
    r = await alice.post(rooms(room_id, "invite"), {})
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    r = await alice.post(rooms(room_id, "invite"), {"user_id": 12})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await alice.post(rooms(room_id, "invite"), {"user_id": "bob"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_reject_invite_by_leaving(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(invite=[bob.user_id])
    r = await bob.post(rooms(room_id, "leave"), {})
    assert r.status == 200 and r.body == {}
    assert await membership_of(alice, room_id, bob.user_id) == "leave"
    r = await bob.post(rooms(room_id, "join"), {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


# Leaving


async def test_leave(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    r = await bob.post(rooms(room_id, "leave"), {"reason": "bye"})
    assert r.status == 200 and r.body == {}
    member = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}")
    assert member.body == {"membership": "leave", "reason": "bye"}
    assert await joined_rooms(bob) == []
    # Leaving again changes nothing and is not an error.
    r = await bob.post(rooms(room_id, "leave"), {})
    assert r.status == 200


async def test_leave_room_never_joined(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    r = await bob.post(rooms(room_id, "leave"), {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await membership_of(alice, room_id, bob.user_id) is None


async def test_leave_unknown_room(api):
    bob = await api.register("bob")
    r = await bob.post(rooms("!unknown:test.local", "leave"), {})
    assert r.status in (403, 404) and r.errcode in ("M_FORBIDDEN", "M_NOT_FOUND"), r


# Kicking


async def test_kick(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    r = await alice.post(rooms(room_id, "kick"), {"user_id": bob.user_id, "reason": "spam"})
    assert r.status == 200 and r.body == {}
    r = await alice.get(f"{V3}/rooms/{room_id}/state/m.room.member/{bob.user_id}", params={"format": "event"})
    assert r["content"] == {"membership": "leave", "reason": "spam"}
    assert r["sender"] == alice.user_id
    assert await joined_rooms(bob) == []
    # A kick is not a ban: bob may come back to a public room.
    await bob.join(room_id)


async def test_kick_needs_power(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    count = await event_count(services, room_id)
    r = await bob.post(rooms(room_id, "kick"), {"user_id": carol.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    # Nobody may kick the room's creator, whatever power they hold below it.
    r = await bob.post(rooms(room_id, "kick"), {"user_id": alice.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await event_count(services, room_id) == count
    assert await membership_of(alice, room_id, carol.user_id) == "join"


async def test_kick_non_member_is_forbidden(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    count = await event_count(services, room_id)
    r = await alice.post(rooms(room_id, "kick"), {"user_id": bob.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    await bob.join(room_id)
    await bob.post(rooms(room_id, "leave"), {})
    count = await event_count(services, room_id)
    r = await alice.post(rooms(room_id, "kick"), {"user_id": bob.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await event_count(services, room_id) == count


async def test_kick_invited_user_rescinds_invite(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(invite=[bob.user_id])
    r = await alice.post(rooms(room_id, "kick"), {"user_id": bob.user_id})
    assert r.status == 200
    r = await bob.post(rooms(room_id, "join"), {})
    assert r.status == 403


# Banning


async def test_ban_and_unban(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    r = await alice.post(rooms(room_id, "ban"), {"user_id": bob.user_id, "reason": "rude"})
    assert r.status == 200 and r.body == {}
    assert await membership_of(alice, room_id, bob.user_id) == "ban"
    assert await joined_rooms(bob) == []
    count = await event_count(services, room_id)
    r = await bob.post(rooms(room_id, "join"), {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await event_count(services, room_id) == count
    r = await alice.post(rooms(room_id, "unban"), {"user_id": bob.user_id})
    assert r.status == 200 and r.body == {}
    assert await membership_of(alice, room_id, bob.user_id) == "leave"
    await bob.join(room_id)


async def test_ban_user_who_never_joined(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    r = await alice.post(rooms(room_id, "ban"), {"user_id": bob.user_id})
    assert r.status == 200
    r = await bob.post(f"{V3}/join/{room_id}", {})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_ban_and_unban_need_power(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    r = await bob.post(rooms(room_id, "ban"), {"user_id": carol.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await alice.post(rooms(room_id, "ban"), {"user_id": carol.user_id})
    assert r.status == 200
    count = await event_count(services, room_id)
    r = await bob.post(rooms(room_id, "unban"), {"user_id": carol.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await event_count(services, room_id) == count
    assert await membership_of(alice, room_id, carol.user_id) == "ban"


async def test_unban_of_user_not_banned(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    r = await alice.post(rooms(room_id, "unban"), {"user_id": bob.user_id})
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert await membership_of(alice, room_id, bob.user_id) == "join"


# Forgetting


async def test_forget_only_after_leave(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    r = await bob.post(rooms(room_id, "forget"), {})
    assert r.status == 400 and r.errcode == "M_UNKNOWN"
    await bob.post(rooms(room_id, "leave"), {})
    r = await bob.post(rooms(room_id, "forget"), {})
    assert r.status == 200 and r.body == {}


async def test_forgotten_room_leaves_sync(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    first = await bob.sync()
    r = await bob.post(rooms(room_id, "leave"), {})
    assert r.status == 200
    left = await bob.sync(since=first["next_batch"])
    assert room_id in left["rooms"]["leave"]
    include_leave = '{"room": {"include_leave": true}}'
    assert room_id in (await bob.sync(filter=include_leave))["rooms"]["leave"]

    r = await bob.post(rooms(room_id, "forget"), {})
    assert r.status == 200
    assert room_id not in (await bob.sync(filter=include_leave))["rooms"]["leave"]
    # New events in the room no longer reach bob either.
    await alice.send_text(room_id, "anyone?")
    later = await bob.sync(since=left["next_batch"])
    assert room_id not in later["rooms"]["leave"] and room_id not in later["rooms"]["join"]
    # Joining again un-forgets the room.
    await bob.join(room_id)
    assert room_id in (await bob.sync())["rooms"]["join"]


async def test_forget_while_invited_is_refused(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(invite=[bob.user_id])
    r = await bob.post(rooms(room_id, "forget"), {})
    assert r.status == 400 and r.errcode == "M_UNKNOWN"
    assert room_id in (await bob.sync())["rooms"]["invite"]


# /joined_rooms


async def test_joined_rooms_lists_only_joined(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    joined = await alice.create_room(preset="public_chat")
    invited = await alice.create_room(invite=[bob.user_id])
    left = await alice.create_room(preset="public_chat")
    await bob.join(joined)
    await bob.join(left)
    await bob.post(rooms(left, "leave"), {})
    assert await joined_rooms(bob) == [joined]
    assert sorted(await joined_rooms(alice)) == sorted([joined, invited, left])
    r = await api.request("GET", f"{V3}/joined_rooms")
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"


async def test_users_of_other_servers_can_be_banned_in_advance(api):
    alice = await api.register("alice")
    room_id = await alice.create_room(preset="public_chat")
    spammer = "@spammer:elsewhere.example"
    r = await alice.post(rooms(room_id, "ban"), {"user_id": spammer, "reason": "known spammer"})
    assert r.status == 200, r
    assert await membership_of(alice, room_id, spammer) == "ban"
    r = await alice.post(rooms(room_id, "unban"), {"user_id": spammer})
    assert r.status == 200, r
    assert await membership_of(alice, room_id, spammer) == "leave"
    for action in ("ban", "kick", "unban"):
        r = await alice.post(rooms(room_id, action), {"user_id": "not-a-user"})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM", (action, r)


async def test_kicked_and_banned_users_see_the_room_in_the_leave_section(api):
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await alice.create_room(preset="public_chat")
    await bob.join(room_id)
    await carol.join(room_id)
    bob_first = await bob.sync()
    carol_first = await carol.sync()
    r = await alice.post(rooms(room_id, "kick"), {"user_id": bob.user_id, "reason": "out"})
    assert r.status == 200
    r = await alice.post(rooms(room_id, "ban"), {"user_id": carol.user_id})
    assert r.status == 200
    await alice.send_text(room_id, "after they went")

    for user, first, membership in ((bob, bob_first, "leave"), (carol, carol_first, "ban")):
        later = await user.sync(since=first["next_batch"])
        assert room_id not in later["rooms"]["join"]
        timeline = later["rooms"]["leave"][room_id]["timeline"]["events"]
        own = [e for e in timeline if e["type"] == "m.room.member" and e["state_key"] == user.user_id]
        assert own[-1]["content"]["membership"] == membership
        assert own[-1]["sender"] == alice.user_id
        # Nothing from after their departure.
        assert all(e.get("content", {}).get("body") != "after they went" for e in timeline)
