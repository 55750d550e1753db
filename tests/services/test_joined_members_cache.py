"""The pipeline's cache of who is joined to a room (the federation sender's destinations and the
wake-ups come from it): a read that was under way while a membership was written is not kept."""

from __future__ import annotations

import asyncio


async def test_a_members_read_racing_a_join_is_not_kept(api, services):
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await alice.create_room(preset="public_chat")
    pipeline = services.pipeline
    assert await pipeline.joined_members(room) == {alice.user_id}

    real_get_members = pipeline.state.get_members
    reading, release = asyncio.Event(), asyncio.Event()

    async def slow_get_members(room_id, membership):
        members = await real_get_members(room_id, membership)  # read before bob's join commits
        reading.set()
        await release.wait()
        return members

    pipeline.room_written_elsewhere(room, membership=True)  # as after any membership change
    pipeline.state.get_members = slow_get_members
    try:
        stale_read = asyncio.ensure_future(pipeline.joined_members(room))
        await reading.wait()
        pipeline.state.get_members = real_get_members
        await bob.join(room)  # written while the old read is still on its way
        release.set()
        assert await stale_read == {alice.user_id}  # what it read, handed to its caller only
    finally:
        pipeline.state.get_members = real_get_members
    assert await pipeline.joined_members(room) == {alice.user_id, bob.user_id}
    assert await pipeline.joined_servers(room) == {"test.local"}
