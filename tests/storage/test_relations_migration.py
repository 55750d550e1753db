"""migrations/0007_relations.sql fills event_relations from the events stored before it.

A server upgraded with rooms full of reactions, edits and threads must serve their
aggregations at once; the migration's backfill is run again here over real events.
"""

from __future__ import annotations

from pathlib import Path

from tests.client.relation_helpers import V3, edit, react, reference, sent, thread_reply

MIGRATION = Path(__file__).parents[2] / "migrations" / "0007_relations.sql"


def backfill_sql() -> str:
    text = MIGRATION.read_text()
    return text[text.index("INSERT INTO event_relations"):]


async def relation_rows(services) -> set[tuple]:
    rows = await services.db.fetch(
        "SELECT event_id, room_id, relates_to_id, rel_type, aggregation_key FROM event_relations"
    )
    return {tuple(row.values()) for row in rows}


async def test_backfill_matches_what_the_pipeline_writes(api, services):
    alice = await api.register("alice")
    room = await alice.create_room()
    root = await alice.send_text(room, "root")
    await edit(alice, room, root, "edited")
    await thread_reply(alice, room, root, "reply")
    await reference(alice, room, root)
    liked = (await react(alice, room, root, "👍"))["event_id"]
    await react(alice, room, root, "🎉")
    # A NUL character in content (canonical JSON writes it \u0000; jsonb refuses it).
    await sent(alice, room, {"body": "nul \u0000", "m.relates_to": {"rel_type": "m.reference", "event_id": root}})
    await sent(alice, room, {"body": "x", "m.relates_to": {"rel_type": 1, "event_id": root}})
    r = await alice.put(f"{V3}/rooms/{room}/redact/{liked}/undo", {})
    assert r.status == 200, r

    written = await relation_rows(services)
    assert len(written) == 5
    assert liked not in {row[0] for row in written}

    await services.db.execute("DELETE FROM event_relations")
    await services.db.execute(backfill_sql())
    backfilled = await relation_rows(services)
    # Everything but the event the backfill cannot parse (jsonb refuses NUL) comes back.
    assert len(backfilled) == 4
    assert backfilled <= written
    assert ("🎉" in {row[4] for row in backfilled})
