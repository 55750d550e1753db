"""The SQL of shared stream positions and of the processes sharing a database.

Positions come from one PostgreSQL sequence per stream (migrations/0021);
processes tell each other what they wrote through LISTEN/NOTIFY on one
channel, and know each other by the application_name of their connections.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import asyncpg

from homeserver.storage.db import Database
from homeserver.storage.events import ROOM_TIP_COLUMNS

CHANNEL = "homeserver_cluster"
# Every connection of a process carries this prefix and its instance id.
APPLICATION_PREFIX = "homeserver:"
# The NOTIFY payload limit is 8000 bytes; stay clear of it.
MAX_PAYLOAD_BYTES = 7800

SEQUENCES = {
    "events": "events_stream_seq",
    "account_data": "account_data_stream_seq",
    "to_device": "to_device_stream_seq",
    "device_lists": "device_lists_stream_seq",
    "receipts": "receipts_stream_seq",
    "presence": "presence_stream_seq",
    "typing": "typing_stream_seq",
}
OUTLIER_SEQUENCE = "events_outlier_seq"

_NAME = re.compile(r"^[a-z_]+$")


def _checked(sequence: str) -> str:
    if not _NAME.match(sequence):
        raise ValueError(f"bad sequence name {sequence!r}")
    return sequence


async def next_position(conn: Any, sequence: str) -> int:
    """The next value of a stream's sequence (``conn``: a pool or a connection in a transaction;
    nextval is not rolled back with it)."""
    return await conn.fetchval(f"SELECT nextval('{_checked(sequence)}')")


async def next_positions(conn: Any, sequence: str, count: int) -> list[int]:
    """``count`` values of the sequence at once, ascending (for one process alone)."""
    rows = await conn.fetch(f"SELECT nextval('{_checked(sequence)}') AS v FROM generate_series(1, $1)", count)
    return sorted(r["v"] for r in rows)


async def last_position(db: Database, sequence: str) -> int:
    """The highest value the sequence has handed out (or was set to): one below the next."""
    row = await db.fetchrow(f"SELECT last_value, is_called FROM {_checked(sequence)}")
    return row["last_value"] if row["is_called"] else row["last_value"] - 1


async def notify(conn: Any, payload: str) -> None:
    """NOTIFY the cluster channel (``conn``: a connection or a pool)."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


async def live_instances(conn: Any) -> set[str]:
    """The instance ids of the processes with a connection to this database now."""
    rows = await conn.fetch(
        "SELECT DISTINCT application_name FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE $1",
        APPLICATION_PREFIX + "%",
    )
    return {r["application_name"][len(APPLICATION_PREFIX):] for r in rows}


async def connect_listener(
    db: Database, instance_id: str, on_message: Callable[[str], None], on_lost: Callable[[], None],
) -> asyncpg.Connection:
    """A connection outside the pool (same DSN) that LISTENs on the cluster channel."""
    if db.dsn is None:
        raise RuntimeError("the database was opened without a DSN; no listening connection can be made")
    conn = await asyncpg.connect(db.dsn, server_settings={"application_name": APPLICATION_PREFIX + instance_id})
    conn.add_termination_listener(lambda _conn: on_lost())
    await conn.add_listener(CHANNEL, lambda _conn, _pid, _channel, payload: on_message(payload))
    return conn


async def try_leader_lock(conn: asyncpg.Connection, key: int) -> bool:
    """A session lock on the listening connection: held until that connection ends."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def lock_room(conn: asyncpg.Connection, room_key: int) -> None:
    """Serialise the writers of one room across processes, until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", room_key)


async def tip_and_position(
    conn: asyncpg.Connection, room_id: str, sequence: str, txn: tuple[str, str, str] | None = None,
) -> tuple[int, tuple[list[tuple[str, int, int | None]], int | None, str | None]]:
    """The next position of the events stream, the room's forward extremities (as
    ``EventStore.tip_with_facts``: event id, depth, state group after) with the room's state
    epoch, and the event already sent under ``txn`` (user, device, txn id) if any, in one
    statement (under the room's lock, see ``begin_locked``)."""
    user_id, device_id, txn_id = txn if txn is not None else (None, None, None)
    row = await conn.fetchrow(
        f"SELECT nextval('{_checked(sequence)}') AS position, {ROOM_TIP_COLUMNS},"
        " (SELECT event_id FROM event_txn_ids WHERE $4::text IS NOT NULL"
        "  AND user_id = $2 AND device_id = $3 AND txn_id = $4) AS txn_event_id",
        room_id, user_id, device_id, txn_id)
    return row["position"], ([tuple(entry) for entry in row["tip"]], row["state_epoch"], row["txn_event_id"])


async def begin_locked(conn: asyncpg.Connection, room_key: int) -> None:
    """BEGIN and the room's advisory lock in one round trip (a statement the tip is read
    after: a statement's snapshot is taken when it starts, so a tip read by the locking
    statement could miss the write of the process we waited for)."""
    await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(room_key)})")


async def end_transaction(conn: asyncpg.Connection, commit: bool) -> None:
    """COMMIT (or ROLLBACK) what ``begin_locked`` began; the room's lock goes with it."""
    if commit:
        await conn.execute("COMMIT")
        return
    try:
        await conn.execute("ROLLBACK")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        # A broken connection: the server ends the transaction itself; the pool drops it.
        conn.terminate()
