-- The durable outbound federation queue (federation/sender.py).
-- Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions

-- One row per destination we have ever queued for (written with the first queued
-- row, so start-up finds every destination with work here): its transaction ids and backoff.
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    -- The last transaction id handed out (ids are increasing per destination).
    last_txn_id BIGINT NOT NULL DEFAULT 0,
    -- The transaction sent but not yet answered 200: it is retried with the same
    -- id and the same rows (the spec: wait for a 200 before a different txnId),
    -- also after a restart. NULL when nothing is in flight.
    pending_txn_id BIGINT,
    last_success_txn_id BIGINT,
    last_success_ts BIGINT,
    -- Consecutive failed attempts; 0 when the destination is healthy.
    failures INTEGER NOT NULL DEFAULT 0,
    -- No attempt before this time (ms since the epoch); persisted so a restart keeps the backoff.
    retry_after_ts BIGINT NOT NULL DEFAULT 0
);

-- PDUs to send, one row per (destination, event); the event JSON stays in events.
CREATE TABLE federation_pdu_queue (
    serial BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- The event's events.stream_ordering: PDUs go out in the order they were
    -- persisted, even when the calls that queued them raced.
    stream_ordering BIGINT NOT NULL,
    -- Set when the row is put into a transaction (federation_destinations.pending_txn_id).
    txn_id BIGINT
);
-- Oldest first per destination; a repeated send_pdu of the same event queues it once.
CREATE INDEX federation_pdu_queue_dest ON federation_pdu_queue (destination, stream_ordering);
CREATE UNIQUE INDEX federation_pdu_queue_event ON federation_pdu_queue (destination, event_id);
CREATE INDEX federation_pdu_queue_txn ON federation_pdu_queue (destination, txn_id) WHERE txn_id IS NOT NULL;

CREATE TABLE federation_edu_queue (
    serial BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination TEXT NOT NULL,
    edu_type TEXT NOT NULL,
    -- The EDU's content as JSON text.
    content TEXT NOT NULL,
    -- EDUs that a newer one makes redundant (a user's typing in a room, a user's
    -- presence) share a key; a newer one replaces a queued one not yet in a transaction.
    coalesce_key TEXT,
    txn_id BIGINT
);
CREATE INDEX federation_edu_queue_dest ON federation_edu_queue (destination, serial);
CREATE INDEX federation_edu_queue_txn ON federation_edu_queue (destination, txn_id) WHERE txn_id IS NOT NULL;
CREATE UNIQUE INDEX federation_edu_queue_coalesce ON federation_edu_queue (destination, coalesce_key)
    WHERE coalesce_key IS NOT NULL AND txn_id IS NULL;
