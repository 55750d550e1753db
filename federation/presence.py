"""Presence over federation: m.presence EDUs in, and ours out to the servers we share rooms with.

Spec: https://spec.matrix.org/v1.19/server-server-api/#presence
An EDU's ``push`` lists users; only the users of the sending server are
believed, and only those sharing a room with one of ours are kept (the service
checks). With ``presence.enabled: false`` nothing is sent and nothing accepted.

Besides the changes, a server that comes to share a room with our users learns
their current presence, as Synapse tells it: when one of its users joins a room
of ours, it gets the presence of our members there, and when one of our users
joins, the room's other servers get theirs.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.protocol import ids
from homeserver.protocol.events import Event
from homeserver.services.presence import OFFLINE, STATES

from federation.context import Federation
from federation.transactions import TransactionHandler

log = logging.getLogger(__name__)

# The fields of a push entry besides user_id (spec: m.presence EDU).
_FIELDS = ("presence", "status_msg", "last_active_ago", "currently_active")


class PresenceRelay:
    def __init__(self, fed: Federation):
        self.fed = fed
        self.presence = fed.services.presence

    def install(self, transactions: TransactionHandler) -> None:
        if not self.presence.enabled:
            return
        transactions.on_edu("m.presence", self.presence_in)
        self.presence.listeners.append(self.presence_out)
        self.fed.services.pipeline.after_persist.append(self.on_join)

    # In

    async def presence_in(self, origin: str, content: dict[str, Any]) -> None:
        push = content.get("push")
        if not isinstance(push, list):
            return
        for entry in push:
            if not isinstance(entry, dict):
                continue
            user_id, state = entry.get("user_id"), entry.get("presence")
            if (not isinstance(user_id, str) or not ids.is_valid_user_id(user_id)
                    or ids.server_name_of(user_id) != origin or state not in STATES):
                continue
            status_msg = entry.get("status_msg")
            last_active_ago = entry.get("last_active_ago")
            if not isinstance(last_active_ago, int) or isinstance(last_active_ago, bool):
                last_active_ago = 0
            await self.presence.remote_update(
                user_id, state, status_msg if isinstance(status_msg, str) else None, last_active_ago)

    # Out

    async def presence_out(self, user_id: str, content: dict[str, Any]) -> None:
        servers = await self._servers_sharing(user_id)
        if servers:
            await self._send(servers, [(user_id, content)])

    async def on_join(self, event: Event) -> None:
        if (event.type != "m.room.member" or not event.state_key or event.content.get("membership") != "join"
                or event.internal.get("outlier")):
            return
        prev = event.internal.get("prev_content")
        if isinstance(prev, dict) and prev.get("membership") == "join":
            return  # a profile change, not a join
        joiner_server = ids.server_name_of(event.state_key)
        if joiner_server is None:
            return
        if joiner_server == self.fed.server_name:
            content = await self.presence.get_presence(event.state_key)
            if content.get("presence") == OFFLINE:
                return
            servers = [s for s in await self.fed.servers_in_room(event.room_id) if s != self.fed.server_name]
            if servers:
                await self._send(servers, [(event.state_key, content)])
            return
        ours = [m for m in await self.fed.services.state.get_members(event.room_id, "join")
                if ids.server_name_of(m) == self.fed.server_name]
        entries = []
        for member in sorted(ours):
            content = await self.presence.get_presence(member)
            if content.get("presence") != OFFLINE:
                entries.append((member, content))
        if entries:
            await self._send([joiner_server], entries)

    async def _servers_sharing(self, user_id: str) -> set[str]:
        # One query for all the user's rooms: a sync that brings a user online costs the
        # same whatever their number of rooms (issue 7).
        servers = await self.fed.graph.servers_sharing_a_room(user_id)
        servers.discard(self.fed.server_name)
        return servers

    async def _send(self, servers: set[str] | list[str], entries: list[tuple[str, dict[str, Any]]]) -> None:
        push = [{"user_id": user_id, **{k: content[k] for k in _FIELDS if k in content}}
                for user_id, content in entries]
        await self.fed.sender.send_edu(sorted(servers), "m.presence", {"push": push})


def install(fed: Federation, transactions: TransactionHandler) -> None:
    PresenceRelay(fed).install(transactions)
