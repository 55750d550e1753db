-- Read receipts (m.read, m.read.private), one per room, type, user and thread,
-- on their own stream. thread_id is '' for an unthreaded receipt, 'main' or a
-- thread root's event id for a threaded one.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- The receipted event's stream position: a receipt only moves forward.
    event_stream_ordering BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
-- Incremental /sync reads the window (since, now] of this stream.
CREATE INDEX receipts_stream ON receipts (stream_id);
