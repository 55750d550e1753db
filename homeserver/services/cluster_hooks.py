"""What the processes of a cluster tell each other, wired to the services (services/cluster.py).

Items (JSON lists) ride on the notifications beside the positions they belong to:

- ``["ev", room, position, event id, target, membership, redacts, tip, body?]``: an event was
  written (sent by the pipeline, services/pipeline.py ``_tell_others``); the receiver
  updates its cached tip of the room (``tip``: [replaced prev events, depth, state group],
  for a local event written on the tip) or drops it, keeps the event in its cache when
  ``body`` carries it (``EventStore.remember_written_elsewhere``), drops what it cached of
  a redacted event, records the room as changed, and wakes its own users joined to it.
- ``["u", stream, position, users]`` / ``["all", stream, position]``: wake these
  users (or, for a list too long to send, everyone waiting) once the position is visible.
- ``["gone", room or null, [event ids]]``: events purged (retention, or a whole room by
  the admin API): the receiver drops them from its caches, and for a room what it knew of it.
- ``["erased", user]``: the user was erased (services/erasure.py): their cached events are
  read again, and served pruned.
- ``["ty", room, user, typing, timeout ms, position]``: a typing change.
- ``["tok", [hex hashes]]``: access tokens ended (logout, deleted device, deactivation).
- ``["pres", user]``: a presence row changed.
- ``["fed", [destinations]]``: federation queues the leader's sender should read.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from homeserver.services.cluster import Cluster
from homeserver.storage.streams import StreamChangeCache, StreamIdGenerator

log = logging.getLogger(__name__)

# Longer lists of users to wake are sent as "everyone waiting": the receiver's users look, most sleep again.
MAX_USERS_BYTES = 3000


def wire_cluster(
    cluster: Cluster, *, notifier: Any, pipeline: Any, event_stream: StreamIdGenerator,
    room_changes: StreamChangeCache, events: Any, typing: Any, tokens: Any, presence: Any,
    account_data_caches: tuple[Any, ...] = (), erasure: Any = None,
) -> None:
    """``account_data_caches``: what keeps users' account data (push rules, ignore lists):
    told to ``forget(users)`` when another process writes theirs."""
    streams = cluster.streams
    pipeline.cluster = cluster

    def broadcast(stream: StreamIdGenerator, position: int, users: frozenset[str], room_id: str | None) -> None:
        if stream is event_stream or cluster.solo:
            return  # events go as "ev" items (event_persisted); alone there is no one to tell
        listed = sorted(users)
        if len(json.dumps(listed)) <= MAX_USERS_BYTES:
            cluster.send(["u", stream.name, position, listed])
        else:
            cluster.send(["all", stream.name, position])

    notifier.broadcast = broadcast

    def on_users(_sender: str, item: list[Any]) -> None:
        stream = streams.get(item[1])
        if item[1] == "account_data":
            for cache in account_data_caches:
                cache.forget(item[3])
        if stream is not None:
            notifier.notify_at(stream, item[2], item[3], local_only=True)

    def on_all(_sender: str, item: list[Any]) -> None:
        stream = streams.get(item[1])
        if item[1] == "account_data":
            for cache in account_data_caches:
                cache.forget()
        if stream is not None:
            notifier.notify_all_at(stream, item[2])

    def on_event(_sender: str, item: list[Any]) -> None:
        _, room_id, position, event_id, target, membership, redacts = item[:7]
        tip = item[7] if len(item) > 7 else None
        body = item[8] if len(item) > 8 else None
        pipeline.room_written_elsewhere(room_id, membership is not None, event_id, tip)
        room_changes.record(room_id, position)
        # The event as written, kept (the /sync this wakes need not read it back); without
        # it, what we held is dropped (an outlier we had may now be part of the room).
        if body is None or not events.remember_written_elsewhere(event_id, position, body):
            events.invalidate(event_id)
        if redacts:
            events.invalidate(redacts)
        if membership is not None and membership != "join" and target:
            typing.user_left(room_id, target)
        members = pipeline.cached_joined_members(room_id)
        if members is not None:
            _wake(members, position, target)  # no task to make: the common case, a message
        else:
            cluster._spawn(_wake_room(room_id, position, target))

    def _wake(members: frozenset[str], position: int, target: str | None) -> None:
        notifier.notify_at(event_stream, position, members | {target} if target else members, local_only=True)

    async def _wake_room(room_id: str, position: int, target: str | None) -> None:
        _wake(await pipeline.joined_members(room_id), position, target)

    def on_gone(_sender: str, item: list[Any]) -> None:
        _, room_id, event_ids = item
        for event_id in event_ids:
            events.invalidate(event_id)
        if room_id is not None:
            events.forget_room(room_id)
            pipeline.room_written_elsewhere(room_id, membership=True)

    def on_erased(_sender: str, item: list[Any]) -> None:
        events.forget_sender(item[1])

    def on_typing(_sender: str, item: list[Any]) -> None:
        _, room_id, user_id, is_typing, timeout_ms, position = item
        typing.remote_change(room_id, user_id, is_typing, timeout_ms, position)

    def on_tokens(_sender: str, item: list[Any]) -> None:
        tokens.forget([bytes.fromhex(h) for h in item[1]], local_only=True)

    def on_presence(_sender: str, item: list[Any]) -> None:
        presence.forget_cached(item[1])

    cluster.handlers.update({
        "u": on_users, "all": on_all, "ev": on_event, "gone": on_gone, "erased": on_erased, "ty": on_typing, "tok": on_tokens,
        "pres": on_presence,
    })

    typing.broadcast = lambda room_id, user_id, is_typing, timeout_ms, position: cluster.send(
        ["ty", room_id, user_id, is_typing, timeout_ms, position])
    tokens.broadcast = lambda hashes: cluster.send(["tok", [h.hex() for h in hashes]])
    presence.row_written = lambda user_id: cluster.send(["pres", user_id])
    if erasure is not None:
        erasure.broadcast = lambda user_id: cluster.send(["erased", user_id])

    # Events of a dead process (or of a lost notification) are not in the change cache.
    event_stream.on_jump = room_changes.forget_before

    def solo_changed(solo: bool) -> None:
        if solo:
            pipeline.forget_rooms()

    cluster.solo_listeners.append(solo_changed)
    cluster.newcomer_listeners.append(typing.tell_everyone_typing)

