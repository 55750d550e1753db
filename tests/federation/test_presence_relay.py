"""Presence and federation, on one server: what the listeners hear, the repeats that keep other
servers from timing our users out, remote users timed out here, and presence turned off.

The EDUs themselves travel in tests/federation/test_synapse_features.py (a real Synapse).
"""

from __future__ import annotations

import pytest

from federation.routes import TRANSACTIONS
from homeserver.services.clock import now_ms
from homeserver.services.presence import FEDERATION_PING_MS, FEDERATION_TIMEOUT_MS
from homeserver.storage.presence import PresenceRow


@pytest.fixture
def config_overrides(request):
    return getattr(request, "param", {})


async def test_listeners_hear_our_users_changes_and_a_repeat_before_other_servers_time_them_out(services):
    heard: list[tuple[str, dict]] = []

    async def listener(user_id: str, content: dict) -> None:
        heard.append((user_id, content))

    presence = services.presence
    presence.listeners.append(listener)
    now = now_ms()
    await presence.set_presence("@alice:test.local", "online", "here", now=now)
    assert [(u, c["presence"], c["status_msg"]) for u, c in heard] == [("@alice:test.local", "online", "here")]

    # Syncing keeps her online: nothing visible changes, nothing is heard ...
    await presence.user_syncing("@alice:test.local", "online", now=now + FEDERATION_PING_MS - 120_000)
    await presence.sweep(now=now + FEDERATION_PING_MS - 60_000)
    assert len(heard) == 1
    # ... until a repeat is due.
    await presence.user_syncing("@alice:test.local", "online", now=now + FEDERATION_PING_MS + 30_000)
    await presence.sweep(now=now + FEDERATION_PING_MS + 60_000)
    assert [(u, c["presence"]) for u, c in heard[1:]] == [("@alice:test.local", "online")]


async def test_remote_users_are_not_announced_and_go_offline_when_their_server_falls_silent(services):
    heard: list[str] = []

    async def listener(user_id: str, content: dict) -> None:
        heard.append(user_id)

    presence = services.presence
    presence.listeners.append(listener)
    now = now_ms()
    # As remote_update stores it (it asks for a shared room, which needs a federated room).
    await presence.store.put(PresenceRow("@bob:remote.example", "online", "there", now, now, False, 1))
    await presence.sweep(now=now + FEDERATION_TIMEOUT_MS - 1)
    assert (await presence.get_presence("@bob:remote.example"))["presence"] == "online"
    await presence.sweep(now=now + FEDERATION_TIMEOUT_MS)
    assert (await presence.get_presence("@bob:remote.example"))["presence"] == "offline"
    assert heard == []


async def test_remote_presence_is_kept_only_for_users_sharing_a_room_with_ours(services):
    assert not await services.presence.remote_update("@stranger:remote.example", "online", None, 0)
    assert (await services.presence.get_presence("@stranger:remote.example"))["presence"] == "offline"


@pytest.mark.parametrize("config_overrides", [{"presence": {"enabled": False}}], indirect=True)
async def test_presence_off_means_no_presence_edus_either_way(api):
    assert "m.presence" not in api.client.server.app[TRANSACTIONS].edu_handlers
    assert api.services.presence.listeners == []
    assert not await api.services.presence.remote_update("@bob:remote.example", "online", None, 0)


async def test_presence_on_handles_presence_edus(api):
    assert "m.presence" in api.client.server.app[TRANSACTIONS].edu_handlers
    assert len(api.services.presence.listeners) == 1
