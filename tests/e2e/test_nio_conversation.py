"""Two users talk through the real server process, driven by matrix-nio."""

from __future__ import annotations

import asyncio

from nio import (
    JoinResponse, LogoutResponse, RoomCreateResponse, RoomLeaveResponse, RoomMessagesResponse,
    RoomSendResponse, SyncResponse,
)

from tests.e2e.nio_users import registered_client



async def test_two_users_converse_with_nio(server):
    alice = await registered_client(server.base_url, "alice")
    bob = await registered_client(server.base_url, "bob")
    try:
        created = await alice.room_create(name="Family", invite=[bob.user_id])
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id

        first = await bob.sync(timeout=0)
        assert isinstance(first, SyncResponse)
        assert room_id in first.rooms.invite
        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)

        # Bob long-polls while Alice sends: the sync returns with her message.
        waiting = asyncio.create_task(bob.sync(timeout=30_000))
        await asyncio.sleep(0.2)
        sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "Hi Bob!"})
        assert isinstance(sent, RoomSendResponse), sent
        got = await waiting
        bodies = [e.body for e in got.rooms.join[room_id].timeline.events if hasattr(e, "body")]
        assert bodies == ["Hi Bob!"]

        reply = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "Hello Alice"})
        assert isinstance(reply, RoomSendResponse)
        got = await alice.sync(timeout=30_000)
        assert [e.event_id for e in got.rooms.join[room_id].timeline.events][-1] == reply.event_id

        for i in range(15):
            await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"line {i}"})
        history: list[str] = []
        token = (await bob.sync(timeout=0)).next_batch
        while True:
            page = await bob.room_messages(room_id, start=token, limit=7)
            assert isinstance(page, RoomMessagesResponse), page
            history.extend(e.body for e in page.chunk if hasattr(e, "body"))
            if not page.end or not page.chunk:
                break
            token = page.end
        assert history[:15] == [f"line {i}" for i in reversed(range(15))]
        assert history[15:] == ["Hello Alice", "Hi Bob!"]

        left = await bob.room_leave(room_id)
        assert isinstance(left, RoomLeaveResponse), left
        got = await bob.sync(timeout=0)
        assert room_id in got.rooms.leave
        assert room_id not in got.rooms.join
        assert isinstance(await alice.logout(), LogoutResponse)
        assert isinstance(await bob.logout(), LogoutResponse)
    finally:
        await alice.close()
        await bob.close()
