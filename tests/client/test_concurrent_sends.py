"""Many clients writing one room at once: one linear history, nothing lost, nothing twice."""

import asyncio


async def test_concurrent_sends_make_one_chain_and_sync_sees_each_once(api, services):
    users = [await api.register(f"u{i}") for i in range(8)]
    room_id = await users[0].create_room(preset="public_chat")
    for user in users[1:]:
        await user.join(room_id)
    reader = users[0]
    since = (await reader.sync())["next_batch"]

    async def send_many(user, count):
        return [await user.send_text(room_id, f"{user.user_id} {n}") for n in range(count)]

    sent = await asyncio.gather(*(send_many(u, 10) for u in users))
    sent_ids = {event_id for ids in sent for event_id in ids}
    assert len(sent_ids) == 80

    # One forward extremity: every event built on the one before it.
    extremities = await services.events.get_forward_extremities(room_id)
    assert len(extremities) == 1
    rows = await services.db.fetch(
        "SELECT e.event_id, e.depth, array_agg(x.prev_event_id) AS prevs FROM events e"
        " JOIN event_edges x USING (event_id) WHERE e.room_id = $1 GROUP BY e.event_id, e.depth"
        " ORDER BY e.stream_ordering",
        room_id,
    )
    for previous, row in zip(rows, rows[1:]):
        assert row["prevs"] == [previous["event_id"]]
        assert row["depth"] == previous["depth"] + 1

    # An incremental sync walked forward sees every message exactly once.
    seen: list[str] = []
    while True:
        r = await reader.sync(since=since, filter='{"room":{"timeline":{"limit":7}}}')
        room = r["rooms"]["join"].get(room_id)
        if room is None:
            break
        events = [e["event_id"] for e in room["timeline"]["events"] if e["type"] == "m.room.message"]
        if room["timeline"]["limited"]:
            # Fill the gap the way a client does: /messages back from prev_batch to our token.
            gap = await reader.get(
                f"/_matrix/client/v3/rooms/{room_id}/messages",
                params={"dir": "b", "from": room["timeline"]["prev_batch"], "to": since, "limit": "1000"},
            )
            events = [e["event_id"] for e in reversed(gap["chunk"]) if e["type"] == "m.room.message"] + events
        seen.extend(events)
        since = r["next_batch"]
    assert len(seen) == len(set(seen)) == 80
    assert set(seen) == sent_ids
