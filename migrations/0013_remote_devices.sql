-- Other servers' users' devices and keys, cached while they share a room with one of ours
-- and kept fresh by their m.device_list_update and m.signing_key_update EDUs.
-- Spec: https://spec.matrix.org/v1.19/server-server-api/#device-management

-- One row per remote user whose device list we hold (or mean to fetch: stale).
-- stream_id is the origin's position of the last update applied (NULL until fetched).
CREATE TABLE remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT,
    stale BOOLEAN NOT NULL DEFAULT true,
    master_key TEXT,
    self_signing_key TEXT
);

-- The devices of a cached list; key_json NULL for a device that uploaded no keys.
CREATE TABLE remote_devices (
    user_id TEXT NOT NULL REFERENCES remote_device_lists (user_id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    display_name TEXT,
    key_json TEXT,
    PRIMARY KEY (user_id, device_id)
);
