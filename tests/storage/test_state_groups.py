"""State groups: deltas from a parent with a bounded chain, and the materialised current state.

DESIGN.md (Storage): each state group is stored as a delta from a parent group
with a bounded chain; the current state of every room is materialised.
"""

from __future__ import annotations

from homeserver.storage.state import MAX_CHAIN_LENGTH, StateStore

V3 = "/_matrix/client/v3"


async def put_state(user, room_id: str, event_type: str, content: dict, state_key: str = "") -> str:
    r = await user.put(f"{V3}/rooms/{room_id}/state/{event_type}/{state_key}", content)
    assert r.status == 200, r
    return r["event_id"]


async def groups_of_room(services, room_id: str) -> dict[int, tuple[int | None, int]]:
    rows = await services.db.fetch(
        "SELECT id, prev_group, chain_length FROM state_groups WHERE room_id = $1", room_id
    )
    return {r["id"]: (r["prev_group"], r["chain_length"]) for r in rows}


def check_chains(groups: dict[int, tuple[int | None, int]]) -> None:
    """Every recorded chain length is the real distance to a snapshot, and within the bound."""
    for group_id, (prev_group, chain_length) in groups.items():
        distance, current = 0, prev_group
        while current is not None:
            distance += 1
            assert distance <= MAX_CHAIN_LENGTH, f"group {group_id}: chain longer than the bound"
            current = groups[current][0]
        assert chain_length == distance, (group_id, chain_length, distance)
        assert 0 <= chain_length <= MAX_CHAIN_LENGTH


async def test_every_group_of_a_busy_room_holds_the_right_state(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await alice.create_room(preset="public_chat", name="Start")
    await bob.join(room_id)
    # Well over MAX_CHAIN_LENGTH state changes: replacing one key again and
    # again, adding new keys, and messages in between (which make no group).
    for i in range(70):
        await put_state(alice, room_id, "m.room.name", {"name": f"name {i}"})
        if i % 3 == 0:
            await put_state(alice, room_id, "org.example.item", {"i": i}, state_key=f"key{i}")
        if i % 5 == 0:
            await alice.send_text(room_id, f"message {i}")
    await put_state(alice, room_id, "m.room.topic", {"topic": "end"})
    await bob.post(f"{V3}/rooms/{room_id}/leave", {})

    rows = await services.db.fetch(
        "SELECT event_id, type, state_key, state_group_before, state_group_after FROM events"
        " WHERE room_id = $1 ORDER BY stream_ordering",
        room_id,
    )
    assert sum(1 for r in rows if r["state_key"] is not None) > 60 + MAX_CHAIN_LENGTH // 2

    # A store with an empty cache reads every group back through its delta chain.
    cold = StateStore(services.db)
    expected: dict[tuple[str, str], str] = {}
    for row in rows:
        if row["state_group_before"] is None:
            assert expected == {}, "only the create event has no state before it"
        assert await cold.get_state(row["state_group_before"]) == expected, row["event_id"]
        if row["state_key"] is not None:
            expected[(row["type"], row["state_key"])] = row["event_id"]
            assert row["state_group_after"] != row["state_group_before"]
        else:
            assert row["state_group_after"] == row["state_group_before"]
        assert await cold.get_state(row["state_group_after"]) == expected, row["event_id"]
        # The warm store used by the server agrees.
        assert await services.state.get_state(row["state_group_after"]) == expected

    groups = await groups_of_room(services, room_id)
    check_chains(groups)
    assert max(length for _, length in groups.values()) == MAX_CHAIN_LENGTH
    snapshots = [g for g, (prev, _) in groups.items() if prev is None]
    assert len(snapshots) >= 2, "a long history must start new chains"

    # Deltas, not copies: a delta group stores only what changed.
    for group_id, (prev_group, _) in groups.items():
        if prev_group is not None:
            count = await services.db.fetchval(
                "SELECT count(*) FROM state_group_entries WHERE state_group = $1", group_id
            )
            assert count == 1

    # The materialised current state is the state after the last event.
    assert await services.state.get_current_state_ids(room_id) == expected
    assert await StateStore(services.db).get_current_state_ids(room_id) == expected
    assert await services.state.get_membership(room_id, bob.user_id) == (
        "leave", expected[("m.room.member", bob.user_id)])
    assert await services.state.get_members(room_id) == {alice.user_id: "join", bob.user_id: "leave"}
    r = await alice.get(f"{V3}/rooms/{room_id}/state")
    assert {(e["type"], e["state_key"]): e["event_id"] for e in r.body} == expected


async def test_store_group_deltas_removals_and_chain_rollover(services):
    store = StateStore(services.db)
    room_id = "!room:test.local"
    expected: dict[tuple[str, str], str] = {("m.room.create", ""): "$create"}
    async with services.db.transaction() as conn:
        group = await store.store_group(conn, room_id, None, dict(expected), dict(expected))
    states = {group: dict(expected)}
    for i in range(2 * MAX_CHAIN_LENGTH + 5):
        delta: dict[tuple[str, str], str | None] = {("org.example.counter", ""): f"$c{i}"}
        if i % 4 == 1:
            delta[("org.example.extra", f"k{i}")] = f"$x{i}"
        if i % 4 == 3:
            # Remove the key added two steps ago.
            delta[("org.example.extra", f"k{i - 2}")] = None
        for key, value in delta.items():
            if value is None:
                expected.pop(key, None)
            else:
                expected[key] = value
        async with services.db.transaction() as conn:
            group = await store.store_group(conn, room_id, group, delta, dict(expected))
        states[group] = dict(expected)

    cold = StateStore(services.db)
    for group_id, state in states.items():
        assert await cold.get_state(group_id) == state, group_id
        assert await store.get_state(group_id) == state, group_id
    groups = await groups_of_room(services, room_id)
    check_chains(groups)
    # 1 + 2 * MAX + 5 groups with chains of MAX + 1 groups: three snapshots.
    assert sorted(g for g, (prev, _) in groups.items() if prev is None) == sorted(
        list(states)[i] for i in (0, MAX_CHAIN_LENGTH + 1, 2 * MAX_CHAIN_LENGTH + 2))
    # A snapshot holds the full state, removed keys left out.
    last_snapshot = list(states)[2 * MAX_CHAIN_LENGTH + 2]
    rows = await services.db.fetch(
        "SELECT type, state_key, event_id FROM state_group_entries WHERE state_group = $1", last_snapshot
    )
    assert {(r["type"], r["state_key"]): r["event_id"] for r in rows} == states[last_snapshot]

