"""Several identical processes on one PostgreSQL: how they hear of each other's writes.

Each process keeps one connection outside the pool that LISTENs on one channel
(homeserver/storage/stream_positions.py). After a write commits, the writer
NOTIFYs the positions it finished, its bound per stream (storage/streams.py)
and items saying what changed (a room's new event, users to wake, typing,
caches to drop); the other processes apply the items, then advance their
streams, and so wake their own long polls. NOTIFY is delivered in commit
order, so a process never hears of a write before the writes committed ahead of it.

Starting: a process says hello and waits (briefly) for the bounds of every
process that has a connection open; the others count it from then on, so no
position of the newcomer can be skipped by them. A process that stops says
bye; one killed is noticed when a stream waits on a gap: its connections are
gone from pg_stat_activity, and it is dropped.

Background singletons (the federation sender, the presence sweep) run on one
process, the holder of a session advisory lock taken on the listening
connection: when that process dies the lock is freed and another takes over.
With no other process around nothing is sent, and the pipeline keeps its
single-writer fast path (``solo``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any, Awaitable, Callable

import asyncpg

from homeserver.services.cluster_outbox import SoloWrite, payloads
from homeserver.storage.db import Database
from homeserver.storage.stream_positions import (
    APPLICATION_PREFIX, CHANNEL, MAX_PAYLOAD_BYTES, connect_listener, live_instances, notify, try_leader_lock,
)
from homeserver.storage.streams import StreamIdGenerator

log = logging.getLogger(__name__)

# An arbitrary constant: the session lock of the process that runs the singletons.
LEADER_LOCK_ID = 0x6C656164
# How long a starting process waits for the others' bounds (a live process answers once its
# writes in progress are done; one whose connections are gone is not waited for).
HELLO_WARN_S = 5.0
HELLO_TIMEOUT_S = 60.0
# A stream waiting on a gap this long asks everyone for their bounds, then checks who is alive.
STALL_ASK_S = 0.25
STALL_CHECK_S = 1.0
WATCH_INTERVAL_S = 0.1
# Dead processes are looked for this often even when nothing waits (to leave cluster mode).
LIVENESS_INTERVAL_S = 5.0
LEADER_RETRY_S = 2.0

Handler = Callable[[str, list[Any]], None]


# In a notification a write sends itself, where its position goes (write_notification);
# random, so that no value of the item (an event id, a room id) can be taken for it.
POSITION = "~position-" + secrets.token_hex(8) + "~"
# What the caller puts in the item where the position goes.
POSITION_MARK = object()


def _encode(message: dict[str, Any]) -> str:
    """A notification payload: compact JSON, its keys in the order given (the sender's id
    first, so that a process knows its own notifications without parsing them)."""
    return json.dumps(message, separators=(",", ":"))


def new_instance_id() -> str:
    return secrets.token_hex(6)


def application_name_for(instance_id: str) -> str:
    """What every database connection of the process is named (seen in pg_stat_activity)."""
    return APPLICATION_PREFIX + instance_id


def instance_id_of(db: Database) -> str:
    """The process's instance id, from its pool's application_name (server.py names it)."""
    name = db.application_name or ""
    return name[len(APPLICATION_PREFIX):] if name.startswith(APPLICATION_PREFIX) else new_instance_id()


class Cluster:
    def __init__(self, db: Database, instance_id: str, streams: dict[str, StreamIdGenerator]):
        self.db = db
        self.instance_id = instance_id
        self.streams = streams
        self.handlers: dict[str, Handler] = {}
        # Peers: instance id -> monotonic time of its last message.
        self._peers: dict[str, float] = {}
        self._listener: asyncpg.Connection | None = None
        # One query at a time on the listening connection (notifications and the leader lock).
        self._listener_lock = asyncio.Lock()
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flushing: asyncio.Task[None] | None = None
        # Outbox: finished positions and bounds per stream, and items.
        self._out_finished: dict[str, list[int]] = {}
        self._out_bounds: dict[str, int] = {}
        self._out_items: list[list[Any]] = []
        self._hello_waiting: set[str] = set()
        self._hello_done: asyncio.Event | None = None
        self._last_ask = 0.0
        self._last_liveness = time.monotonic()
        self.leader = False
        self._leader_jobs: list[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = []
        # Told when the set of peers goes from empty to not, or back (the pipeline's caches).
        self.solo_listeners: list[Callable[[bool], Awaitable[None] | None]] = []
        # Told when a process joins (before it is answered): what it should know of our memory.
        self.newcomer_listeners: list[Callable[[], None]] = []
        # Held by writes that rely on being the only process (the pipeline's fast path):
        # a newcomer is greeted only once they are done.
        self._solo_writes = 0
        self._solo_drained = asyncio.Event()
        self._solo_drained.set()
        for stream in streams.values():
            stream.announcer = self._announce_finished
            stream.may_reserve = lambda: self.solo and self._started
        self._started = False
        # How every payload we send begins (``_encode``: the sender's id first).
        self._own_prefix = _encode({"i": instance_id})[:-1] + ","

    # Lifecycle

    async def start(self) -> None:
        """Listen, greet the processes already running and learn their bounds, try for leadership."""
        await self._connect()
        others = await live_instances(self.db.pool) - {self.instance_id}
        for stream in self.streams.values():
            stream.hold_start()
        if others:
            self._hello_waiting = set(others)
            self._hello_done = asyncio.Event()
            bounds = {name: s.own_bound() for name, s in self.streams.items()}
            for other in others:
                self._add_peer(other, bounds)
            await self._send({"k": "hello", "b": bounds})
            started = time.monotonic()
            warned = False
            while self._hello_waiting and time.monotonic() < started + HELLO_TIMEOUT_S:
                if not warned and time.monotonic() > started + HELLO_WARN_S:
                    warned = True
                    log.warning("cluster: waiting for %s to answer", sorted(self._hello_waiting))
                try:
                    await asyncio.wait_for(self._hello_done.wait(), 0.2)
                except asyncio.TimeoutError:
                    # Those whose connections are all gone will not answer.
                    alive = await live_instances(self.db.pool)
                    for gone in self._hello_waiting - alive:
                        self._drop_peer(gone)
                    self._hello_waiting &= alive
            if self._hello_waiting:
                # Alive but silent for a minute (stuck?): their writes in progress are unknown to us.
                log.error("cluster: no answer from %s; starting without their positions in flight",
                          sorted(self._hello_waiting))
        for stream in self.streams.values():
            stream.begin()
        self._spawn(self._watch())
        self._started = True
        await self._try_leadership()

    async def stop(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.leader:
            await self._lose_leadership()
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        if self._peers:
            try:
                await self._send({"k": "bye"})
            except Exception:  # shutting down: they will notice we are gone
                pass
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def _connect(self) -> None:
        self._listener = await connect_listener(self.db, self.instance_id, self._on_payload, self._on_lost)

    def _on_lost(self) -> None:
        if self._closing:
            return
        log.warning("cluster: the listening connection was lost; reconnecting")
        self._listener = None
        if self.leader:
            self._spawn(self._lose_leadership())
        self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.2
        while not self._closing:
            try:
                await self._connect()
                break
            except (OSError, asyncpg.PostgresError) as e:
                log.warning("cluster: cannot reconnect the listener: %s", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        # We may have missed anything meanwhile: count every live process, ask for their bounds.
        for other in await live_instances(self.db.pool) - {self.instance_id}:
            if other not in self._peers:
                self._add_peer(other, {name: s.current() for name, s in self.streams.items()})
        await self._send({"k": "ask"})
        await self._try_leadership()

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Peers

    @property
    def solo(self) -> bool:
        """No other process shares the database (as far as we know now)."""
        return not self._peers

    def _add_peer(self, instance: str, bounds: dict[str, int]) -> None:
        was_solo = not self._peers
        self._peers[instance] = time.monotonic()
        for name, stream in self.streams.items():
            if name in bounds:
                stream.add_peer(instance, bounds[name])
        if was_solo:
            self._tell_solo(False)

    def _drop_peer(self, instance: str) -> None:
        if self._peers.pop(instance, None) is None:
            return
        log.info("cluster: process %s is gone", instance)
        for stream in self.streams.values():
            stream.drop_peer(instance)
        self._hello_waiting.discard(instance)
        if not self._peers:
            self._tell_solo(True)

    def _tell_solo(self, solo: bool) -> None:
        for listener in self.solo_listeners:
            result = listener(solo)
            if result is not None:
                self._spawn(result)

    def solo_write(self) -> SoloWrite:
        """Around a write that relies on this process being the only writer."""
        return SoloWrite(self)

    # Sending

    def _announce_finished(self, stream: str, position: int | None, bound: int) -> None:
        if not self._peers:
            return
        if position is not None:
            self._out_finished.setdefault(stream, []).append(position)
        self._out_bounds[stream] = bound
        self._schedule_flush()

    def write_notification(self, stream: str, bound: int, item: list[Any]) -> tuple[str, str, str] | None:
        """A notification for a write to send itself as it commits (storage/events.py
        ``insert_on_tip``): ``item``, and the write's position finished with ``bound``
        (our own, taken before the write). The position is not known yet: where the
        payload says POSITION (a placeholder, the third value), the write puts it.
        None when there is no one to tell or it would not fit."""
        if not self._peers:
            return None
        marked = [POSITION if value is POSITION_MARK else value for value in item]
        payload = _encode({"i": self.instance_id, "k": "w", "x": [marked], "b": {stream: bound},
                           "f": {stream: [POSITION]}})
        if len(payload.encode()) > MAX_PAYLOAD_BYTES - 100:
            return None
        return CHANNEL, payload, json.dumps(POSITION)

    def send(self, item: list[Any]) -> None:
        """Tell the other processes (after what is already queued); nothing when alone."""
        if not self._peers:
            return
        self._out_items.append(item)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        # One turn of the loop first: the positions and items of one write go out together.
        await asyncio.sleep(0)
        while self._out_finished or self._out_items or self._out_bounds:
            finished, self._out_finished = self._out_finished, {}
            bounds, self._out_bounds = self._out_bounds, {}
            items, self._out_items = self._out_items, []
            for bound_name, stream in self.streams.items():
                if bound_name in finished or bound_name in bounds:
                    bounds[bound_name] = stream.own_bound()
            for payload in payloads(self.instance_id, finished, bounds, items):
                try:
                    await self._notify(payload)
                except Exception:
                    # The others will stall on the gap, ask, and get our bounds then.
                    log.exception("cluster: a notification could not be sent")

    async def _send(self, message: dict[str, Any]) -> None:
        await self._notify(_encode({"i": self.instance_id, **message}))

    async def _notify(self, payload: str) -> None:
        """On the listening connection (no wait for the pool, which long polls and writes
        may fill); on the pool while that connection is being made again."""
        listener = self._listener
        if listener is not None:
            try:
                async with self._listener_lock:
                    await notify(listener, payload)
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass  # lost meanwhile: the pool then
        await notify(self.db.pool, payload)

    def _state_message(self, to: str | None) -> dict[str, Any]:
        return {
            "k": "state", "to": to,
            "b": {name: s.own_bound() for name, s in self.streams.items()},
            "f": {name: s.finished_above_bound() for name, s in self.streams.items()},
        }

    # Receiving

    def _on_payload(self, payload: str) -> None:
        if payload.startswith(self._own_prefix):
            # PostgreSQL delivers our own notifications to us too: not parsed (a write's
            # carries its event, parsing it would cost as much as a peer's).
            return
        try:
            message = json.loads(payload)
            sender = message["i"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: unreadable notification %.100r", payload)
            return
        if sender == self.instance_id:
            return
        kind = message.get("k")
        if kind == "bye":
            self._drop_peer(sender)
            return
        if kind == "hello":
            # Counted at once: its positions are bounded from now on, whatever comes next.
            self._add_peer(sender, message.get("b") or {})
            self._spawn(self._greet(sender))
            return
        if sender not in self._peers:
            # Unknown (we missed its hello while reconnecting): bounded where we are until it says more.
            self._add_peer(sender, {name: s.current() for name, s in self.streams.items()})
        self._peers[sender] = time.monotonic()
        if kind == "ask":
            self._spawn(self._send(self._state_message(None)))
            return
        for item in message.get("x", ()):
            handler = self.handlers.get(item[0])
            if handler is not None:
                try:
                    handler(sender, item)
                except Exception:
                    log.exception("cluster: handling %r failed", item[0])
        finished = message.get("f") or {}
        for name, bound in (message.get("b") or {}).items():
            stream = self.streams.get(name)
            if stream is not None:
                stream.remote_finished(sender, finished.get(name, []), bound)
        if kind == "state" and sender in self._hello_waiting:
            self._hello_waiting.discard(sender)
            if not self._hello_waiting and self._hello_done is not None:
                self._hello_done.set()

    async def _greet(self, newcomer: str) -> None:
        # Our writes that assume no other writer finish before the newcomer may write,
        # and the positions we took ahead are given up.
        await self._solo_drained.wait()
        for stream in self.streams.values():
            stream.release_reserved()
        for listener in self.newcomer_listeners:
            listener()
        await self._send(self._state_message(newcomer))

    # Watching for gaps and dead processes

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                await self._check()
            except Exception:
                log.exception("cluster: the liveness check failed")

    async def _check(self) -> None:
        now = time.monotonic()
        waiting = [s.waiting_since for s in self.streams.values() if s.waiting_since is not None]
        oldest = min(waiting) if waiting else None
        if oldest is not None and now - oldest > STALL_ASK_S and now - self._last_ask > STALL_ASK_S * 2:
            self._last_ask = now
            await self._send({"k": "ask"})
        stalled = oldest is not None and now - oldest > STALL_CHECK_S
        if self._peers and (stalled or now - self._last_liveness > LIVENESS_INTERVAL_S):
            self._last_liveness = now
            alive = await live_instances(self.db.pool)
            for peer in list(self._peers):
                if peer not in alive:
                    self._drop_peer(peer)
        if not self.leader and self._listener is not None and now - self._last_leader_try > LEADER_RETRY_S:
            await self._try_leadership()

    # Leadership

    _last_leader_try = 0.0

    async def run_on_leader(self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
        """Run a background job only on the leader: started now if we lead, else when we take over."""
        self._leader_jobs.append((start, stop))
        if self.leader:
            await start()

    async def end_job(self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
        """Shutting down: the job stops (if it runs here) and is not started again."""
        self._leader_jobs.remove((start, stop))
        if self.leader:
            await stop()

    async def _try_leadership(self) -> None:
        self._last_leader_try = time.monotonic()
        listener = self._listener
        if self.leader or listener is None:
            return
        try:
            async with self._listener_lock:
                got = await try_leader_lock(listener, LEADER_LOCK_ID)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return
        if got and not self.leader:
            self.leader = True
            log.info("cluster: this process (%s) runs the background jobs", self.instance_id)
            for start, _stop in self._leader_jobs:
                try:
                    await start()
                except Exception:
                    log.exception("cluster: a background job failed to start")

    async def _lose_leadership(self) -> None:
        if not self.leader:
            return
        self.leader = False
        for _start, stop in self._leader_jobs:
            try:
                await stop()
            except Exception:
                log.exception("cluster: a background job failed to stop")
