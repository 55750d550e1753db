-- The admin API (homeserver/admin/, Synapse's /_synapse/admin).

-- Rooms a server admin blocked: local users may not join them or be invited to them.
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    blocked_by TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

-- Room deletions started with DELETE /_synapse/admin/v2/rooms/{roomId}: kept in the
-- database so that every process can answer delete_status, and after a restart.
CREATE TABLE room_delete_jobs (
    delete_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- shutting_down, purging, complete or failed
    status TEXT NOT NULL,
    error TEXT,
    -- kicked_users, failed_to_kick_users, local_aliases, new_room_id (JSON)
    shutdown_room TEXT NOT NULL DEFAULT '{}',
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX room_delete_jobs_room ON room_delete_jobs (room_id, created_ts);

-- Synapse's user types (null for a regular user, 'bot', 'support'), set by admins.
ALTER TABLE users ADD COLUMN user_type TEXT;
