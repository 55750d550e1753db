"""Simplified sliding sync for a room shared with a real Synapse, side by side with
Synapse's own answer to the same request for its user (the shape Element X reads)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.federation.interop_helpers import our_client, register_ours

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
BODY = {"conn_id": "room-list", "lists": {
    "all": {"ranges": [[0, 19]], "timeline_limit": 3,
            "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.create", ""]]},
    "invites": {"ranges": [[0, 19]], "timeline_limit": 1, "required_state": [], "filters": {"is_invite": True}},
}, "extensions": {"receipts": {"enabled": True}, "typing": {"enabled": True}}}


async def _until(client, predicate, pos: str | None = None, timeout: float = 60) -> tuple[dict, Any]:
    deadline = time.monotonic() + timeout
    while True:
        query = {"timeout": "5000" if pos else "0", **({"pos": pos} if pos else {})}
        answer = await client.call("POST", SS, BODY, query)
        found = predicate(answer)
        if found:
            return answer, found
        pos = answer["pos"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing matched; last: {answer}")
        await asyncio.sleep(0)


async def test_a_synapse_room_in_our_sliding_sync_shaped_like_synapses(synapse, our_server_tls):
    theirs = await synapse.register("ssmama")
    ours = await register_ours(our_server_tls, "sspeter")
    async with synapse.client(theirs) as s, our_client(our_server_tls, ours) as o:
        room_id = await s.create_room(preset="private_chat", name="Family slide")
        await s.invite(room_id, ours.user_id)
        first, invite = await _until(o, lambda a: a["rooms"].get(room_id))
        assert first["lists"]["invites"]["count"] == 1
        assert invite["initial"] is True and invite["name"] == "Family slide"
        assert any(e["type"] == "m.room.member" and e["state_key"] == ours.user_id for e in invite["invite_state"])

        await o.join(room_id)
        for i in range(2):
            await s.send_text(room_id, f"slide {i}")

        sections: list[dict] = []

        def two_messages(answer: dict) -> Any:
            room = answer["rooms"].get(room_id)
            if room is not None:
                sections.append(room)
            bodies = [e["content"].get("body") for e in (room or {}).get("timeline", [])
                      if e["type"] == "m.room.message"]
            return room if bodies[-1:] == ["slide 1"] else None

        _, joined = await _until(o, two_messages, first["pos"])
        # The join turned the invite into a room sent anew, with its name (sent once, as Synapse).
        assert sections[0]["initial"] is True and sections[0]["name"] == "Family slide"
        assert "invite_state" not in sections[0]
        # Synapse answers its own user for the same room.
        _, theirs_room = await _until(s, lambda a: a["rooms"].get(room_id))
        assert theirs_room["name"] == "Family slide"
        for key in ("bump_stamp", "joined_count", "invited_count", "notification_count", "highlight_count",
                    "timeline", "prev_batch", "limited", "num_live"):
            assert key in joined and key in theirs_room, key
        assert joined["joined_count"] == theirs_room["joined_count"] == 2
        # Neither server puts room_id in the events.
        assert all("room_id" not in e for e in joined["timeline"] + theirs_room["timeline"])
        assert {e["type"] for e in joined["required_state"]} <= {"m.room.name", "m.room.member", "m.room.create"}
