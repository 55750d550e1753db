"""Typing, read receipts and the read marker through the real server process, as matrix-nio
parses them (its sync schema validates the ephemeral events)."""

from __future__ import annotations

from nio import (
    FullyReadEvent,
    ReceiptEvent,
    RoomReadMarkersResponse,
    RoomTypingResponse,
    SyncResponse,
    TypingNoticeEvent,
    UpdateReceiptMarkerResponse,
)

from tests.e2e.nio_users import registered_client



def ephemeral(sync: SyncResponse, room_id: str) -> list:
    assert isinstance(sync, SyncResponse), sync
    return sync.rooms.join[room_id].ephemeral if room_id in sync.rooms.join else []


async def test_typing_receipts_and_read_marker_with_nio(server):
    alice = await registered_client(server.base_url, "alice")
    bob = await registered_client(server.base_url, "bob")
    try:
        created = await alice.room_create(name="Family", invite=[bob.user_id])
        room_id = created.room_id
        await bob.sync(timeout=0)
        await bob.join(room_id)
        sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "Read me"})
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)

        assert isinstance(await alice.room_typing(room_id, True, 30_000), RoomTypingResponse)
        got = await bob.sync(timeout=30_000)
        typing = [e for e in ephemeral(got, room_id) if isinstance(e, TypingNoticeEvent)]
        assert [e.users for e in typing] == [[alice.user_id]]
        assert bob.rooms[room_id].typing_users == [alice.user_id]
        assert isinstance(await alice.room_typing(room_id, False), RoomTypingResponse)
        got = await bob.sync(timeout=30_000)
        assert [e.users for e in ephemeral(got, room_id) if isinstance(e, TypingNoticeEvent)] == [[]]

        # nio sends threaded receipts (thread "main") by default.
        receipt = await bob.update_receipt_marker(room_id, sent.event_id)
        assert isinstance(receipt, UpdateReceiptMarkerResponse), receipt
        # nio sends {"thread_id": null} for an unthreaded receipt, which the spec (and Synapse)
        # refuse; /read_markers sets unthreaded ones.
        marker = await bob.room_read_markers(
            room_id, sent.event_id, read_event=sent.event_id, private_read_event=sent.event_id,
        )
        assert isinstance(marker, RoomReadMarkersResponse), marker

        got = await alice.sync(timeout=30_000)
        seen = sorted(
            (r.user_id, r.event_id, r.receipt_type, str(r.thread_id))
            for e in ephemeral(got, room_id) if isinstance(e, ReceiptEvent) for r in e.receipts
        )
        assert seen == sorted([
            (bob.user_id, sent.event_id, "m.read", "main"),
            (bob.user_id, sent.event_id, "m.read", "None"),
        ])
        # Bob sees his private receipt too, and his read marker.
        got = await bob.sync(timeout=0)
        own = sorted(
            (r.user_id, r.receipt_type, str(r.thread_id))
            for e in ephemeral(got, room_id) if isinstance(e, ReceiptEvent) for r in e.receipts
        )
        assert own == sorted([
            (bob.user_id, "m.read", "main"), (bob.user_id, "m.read", "None"), (bob.user_id, "m.read.private", "None"),
        ])
        markers = [e for e in got.rooms.join[room_id].account_data if isinstance(e, FullyReadEvent)]
        assert [e.event_id for e in markers] == [sent.event_id]
    finally:
        await alice.close()
        await bob.close()
