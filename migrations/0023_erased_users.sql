-- Users erased (homeserver erase-user, deactivate with erase): when the erasure began,
-- and when it finished (NULL while a run is under way or was interrupted; a re-run
-- finishes it). The admin API reports them as "erased", as Synapse does.
CREATE TABLE erased_users (
    user_id TEXT PRIMARY KEY,
    started_ts BIGINT NOT NULL,
    completed_ts BIGINT
);
