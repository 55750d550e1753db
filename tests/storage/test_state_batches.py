"""StateStore.get_states: many state groups resolved in one query, as get_state does one by one."""

from __future__ import annotations

from homeserver.storage.state import StateStore
from tests.storage.test_state_groups import put_state

V3 = "/_matrix/client/v3"


async def test_many_groups_in_one_query_equal_each_group_alone(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    rooms = []
    for n in range(3):
        room_id = await alice.create_room(preset="public_chat", name=f"room {n}")
        await bob.join(room_id)
        # Past a chain's bound, with a key replaced and keys added, and a leave.
        for i in range(60):
            await put_state(alice, room_id, "m.room.name", {"name": f"name {i}"})
            if i % 7 == 0:
                await put_state(alice, room_id, "org.example.item", {"i": i}, state_key=f"key{i}")
        await bob.post(f"{V3}/rooms/{room_id}/leave", {})
        rooms.append(room_id)
    rows = await services.db.fetch(
        "SELECT id FROM state_groups WHERE room_id = ANY($1::text[]) ORDER BY id", rooms)
    groups = [r["id"] for r in rows]
    assert len(groups) > 180

    batched = await StateStore(services.db).get_states(groups + [None])
    queries = {"n": 0}
    db = services.db
    fetch = db.fetch

    async def counting(*args):
        queries["n"] += 1
        return await fetch(*args)

    db.fetch = counting
    try:
        again = await StateStore(services.db).get_states(groups)
    finally:
        db.fetch = fetch
    assert queries["n"] == 1
    assert again == batched
    # The same as walking each chain by hand, the nearest group's entry winning.
    parents = {r["id"]: r["prev_group"] for r in await services.db.fetch("SELECT id, prev_group FROM state_groups")}
    entries: dict[int, dict] = {}
    for r in await services.db.fetch("SELECT state_group, type, state_key, event_id FROM state_group_entries"):
        entries.setdefault(r["state_group"], {})[(r["type"], r["state_key"])] = r["event_id"]
    for group in groups:
        expected: dict = {}
        current = group
        while current is not None:
            for key, event_id in entries.get(current, {}).items():
                expected.setdefault(key, event_id)
            current = parents[current]
        assert batched[group] == {k: v for k, v in expected.items() if v is not None}
        # And as one group read alone by a fresh store.
        assert batched[group] == await StateStore(services.db).get_state(group)
    assert batched[groups[-1]][("m.room.member", bob.user_id)]


async def test_a_few_entries_of_many_groups_equal_the_full_states(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat")
    for i in range(60):
        await put_state(alice, room_id, "m.room.history_visibility",
                        {"history_visibility": ["shared", "joined", "invited"][i % 3]})
        if i == 30:
            await bob.join(room_id)
    rows = await services.db.fetch("SELECT id FROM state_groups WHERE room_id = $1", room_id)
    groups = [r["id"] for r in rows]
    keys = [("m.room.history_visibility", ""), ("m.room.member", bob.user_id), ("m.room.topic", "")]
    full = await StateStore(services.db).get_states(groups)
    for cached in (0, 5):
        store = StateStore(services.db)
        await store.get_states(groups[:cached])  # some from the cache, the others read
        entries = await store.get_entries(groups + [None], keys)
        assert entries == {g: {k: full[g][k] for k in keys if k in full[g]} for g in groups}
    assert any(("m.room.member", bob.user_id) in e for e in entries.values())
