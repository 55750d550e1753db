"""EventStore.get_events: what it adds to each event read (homeserver/storage/events.py)."""

from __future__ import annotations

from tests.helpers import Api


async def test_a_redaction_marks_only_an_event_of_its_own_room(api: Api, services):
    alice = await api.register("alice")
    room_a = await alice.create_room()
    room_b = await alice.create_room()
    target = await alice.send_text(room_b, "in b")
    other = await alice.send_text(room_b, "also in b")
    from_a = [await alice.send_text(room_a, f"in a {i}") for i in range(2)]
    from_b = [await alice.send_text(room_b, f"later in b {i}") for i in range(2)]
    # Rows as a peer's redactions would leave them: the pipeline refuses ours across rooms.
    for redaction in from_a + from_b[::-1]:
        await services.db.execute("INSERT INTO redactions (event_id, redacts) VALUES ($1, $2)", redaction, target)
    events = services.events
    events._cache.clear()
    read = await events.get_events([target, other, from_a[0]])
    # The first of the redactions of its own room, whatever their order of arrival.
    assert read[target].internal["redacted_by"] == min(from_b)
    assert read[other].internal["redacted_by"] is None
    assert read[from_a[0]].internal["redacted_by"] is None
    # Only those of another room: not redacted.
    await services.db.execute("DELETE FROM redactions WHERE event_id = ANY($1::text[])", from_b)
    events._cache.clear()
    assert (await events.get_event(target)).internal["redacted_by"] is None
