-- The admin API's history purges and media protection (homeserver/admin/, media/admin.py).

-- History purges started with POST /_synapse/admin/v1/purge_history/{roomId}: kept in
-- the database so that every process can answer purge_history_status, and after a restart.
-- A purge of the whole room (storage/purge.py) deletes its rows too.
CREATE TABLE purge_history_jobs (
    purge_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- active, complete or failed
    status TEXT NOT NULL,
    error TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX purge_history_jobs_room ON purge_history_jobs (room_id, created_ts);
-- One running purge per room, whichever process started it.
CREATE UNIQUE INDEX purge_history_jobs_active ON purge_history_jobs (room_id) WHERE status = 'active';

-- Local media an admin protected (POST /_synapse/admin/v1/media/protect/{mediaId}), which
-- the bulk quarantines and the deletion of old media leave alone (stickers, shared images).
-- A table of its own, not a column of media: storage/media.py reads media rows whole
-- into its LocalMedia records. The row goes with the media.
CREATE TABLE media_protected (
    media_id TEXT PRIMARY KEY REFERENCES media (media_id) ON DELETE CASCADE,
    protected_by TEXT NOT NULL,
    protected_ts BIGINT NOT NULL
);
