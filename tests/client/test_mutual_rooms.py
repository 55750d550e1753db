"""The rooms two users share (MSC2666, as Synapse serves it)."""

from __future__ import annotations

UNSTABLE = "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms"


async def test_mutual_rooms_lists_shared_joined_rooms(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    shared = sorted([await alice.create_room(preset="public_chat") for _ in range(3)])
    for room_id in shared:
        await bob.join(room_id)
    await alice.create_room()  # alice alone
    invited = await alice.create_room()
    await alice.invite(invited, bob.user_id)  # an invite is not a shared room
    r = await alice.get(UNSTABLE, params={"user_id": bob.user_id})
    assert r.status == 200 and r.body == {"joined": shared}, r
    r = await bob.get(f"/_matrix/client/v3/user/{alice.user_id}/mutual_rooms")
    assert r.status == 200 and r.body == {"joined": shared}, r
    await bob.post(f"/_matrix/client/v3/rooms/{shared[0]}/leave", {})
    r = await alice.get(UNSTABLE, params={"user_id": bob.user_id})
    assert r["joined"] == shared[1:]


async def test_mutual_rooms_pages(api, services, monkeypatch):
    from homeserver.services import room_summary
    monkeypatch.setattr(room_summary, "MUTUAL_ROOMS_PAGE", 2)
    alice = await api.register("alice")
    bob = await api.register("bob")
    rooms = sorted([await alice.create_room(preset="public_chat") for _ in range(3)])
    for room_id in rooms:
        await bob.join(room_id)
    r = await alice.get(UNSTABLE, params={"user_id": bob.user_id})
    assert r["joined"] == rooms[:2] and r["next_batch"], r
    r = await alice.get(UNSTABLE, params={"user_id": bob.user_id, "from": r["next_batch"]})
    assert r.body == {"joined": rooms[2:]}, r


async def test_mutual_rooms_bad_input(api):
    alice = await api.register("alice")
    r = await alice.get(UNSTABLE)
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM", r
    r = await alice.get(UNSTABLE, params={"user_id": "bob"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await alice.get(UNSTABLE, params={"user_id": alice.user_id})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await alice.get(UNSTABLE, params={"user_id": "@bob:test", "from": "junk"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM", r
    r = await alice.api.request("GET", UNSTABLE, params={"user_id": "@bob:test"})
    assert r.status == 401, r
