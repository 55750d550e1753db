-- Presence of local users, one row each (a user without a row is offline), on its
-- own stream: stream_id is the position of the last change others see. Timestamp
-- refreshes that change nothing visible keep the row's stream_id.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    -- The last /sync (or PUT) seen from the user: the idle timeout counts from it.
    last_sync_ts BIGINT NOT NULL,
    -- "unavailable" set by the user (PUT) rather than by the idle timeout: syncing
    -- does not bring them back online.
    explicit BOOLEAN NOT NULL DEFAULT FALSE,
    stream_id BIGINT NOT NULL
);
-- Incremental /sync reads the window (since, now] of this stream.
CREATE INDEX presence_stream ON presence (stream_id);
-- The idle sweep looks only at users who are not offline.
CREATE INDEX presence_awake ON presence (last_sync_ts) WHERE state <> 'offline';
