"""The write of a room's tip by the event pipeline, serialised across processes (docs/scaling.md)."""

from __future__ import annotations

import contextlib
import zlib
from typing import Any

from homeserver.storage.events import RoomTip
from homeserver.storage.stream_positions import begin_locked, end_transaction, tip_and_position


def room_lock_key(room_id: str) -> int:
    """The room's pg_advisory_xact_lock key: the same on every process (crc32, not hash())."""
    return zlib.crc32(room_id.encode()) | (0x726F6F6D << 32)


class Solo:
    async def __aenter__(self) -> bool:
        return True

    async def __aexit__(self, *exc: Any) -> None:
        pass


class RoomWriter:
    """The write of one room's tip, serialised across processes.

    Alone on the database (``conn`` None, ``optimistic`` false) the in-process room
    lock is enough and the cached tip is the truth. With other processes, either
    ``optimistic``: the tip as cached here, written on by the write itself
    (``EventStore.insert_on_tip``) if the room's state is still the one it was built on,
    and tried again on a fresh tip if another process changed the state meanwhile; or
    ``locked``: a transaction holds the room's advisory lock from the reading of the tip
    to the commit of the event (state events, which write more than one statement, and
    an optimistic write refused).
    """

    def __init__(self, pipeline: Any, room_id: str, *, locked: bool = True):
        self.pipeline = pipeline
        self.room_id = room_id
        self.locked = locked
        self.optimistic = False
        self.conn: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._open = False
        self.allocation: Any = None  # the position taken with the tip
        self.txn_read = False  # whether txn_event_id was read with the tip
        self.txn_event_id: str | None = None

    async def __aenter__(self) -> "RoomWriter":
        cluster = self.pipeline.cluster
        if cluster is None:
            return self
        try:
            if await self._stack.enter_async_context(cluster.solo_write()):
                return self
            if not self.locked:
                self.optimistic = True
                return self
            # Each writer holds a connection and reads on others: at most half the pool write at once.
            await self._stack.enter_async_context(self.pipeline.writer_slots)
            self.conn = await self._stack.enter_async_context(self.pipeline.db.pool.acquire())
            self._open = True
            await begin_locked(self.conn, room_lock_key(self.room_id))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def tip(self, with_position: bool = True, txn: tuple[str, str, str] | None = None) -> RoomTip:
        """The room's forward extremities; locked, also the event's position and (``txn``:
        sender, device, txn id) the event already sent under it (``txn_event_id``)."""
        if self.conn is None:
            return await self.pipeline.cached_tip(self.room_id)
        if not with_position:
            return await self.pipeline.events.tip_with_facts(self.room_id, self.conn)
        # The lock is held (taken when the transaction began): the tip as it is now, read
        # with the event's position (in flight from here until the commit or the rollback).
        stream = self.pipeline.stream
        self.allocation = stream.allocate(
            fetch=lambda: tip_and_position(self.conn, self.room_id, stream.sequence, txn))
        await self.allocation.__aenter__()
        tip, state_epoch, self.txn_event_id = self.allocation.extra
        self.txn_read = txn is not None
        return RoomTip.of(tip, state_epoch)

    async def commit(self) -> None:
        if self._open:
            self._open = False
            await end_transaction(self.conn, commit=True)

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self._open:
                self._open = False
                await end_transaction(self.conn, commit=False)
        finally:
            try:
                if self.allocation is not None:  # unused (the event was refused): a gap
                    await self.allocation.__aexit__(None, None, None)
            finally:
                await self._stack.aclose()

    @contextlib.asynccontextmanager
    async def transaction(self):
        """The connection to write on, in a transaction committed at the end of the block."""
        if self.conn is None:
            async with self.pipeline.db.transaction() as conn:
                yield conn
        else:
            yield self.conn
            await self.commit()
