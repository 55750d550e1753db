-- Users, devices and access tokens.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    is_admin BOOLEAN NOT NULL DEFAULT false,
    deactivated BOOLEAN NOT NULL DEFAULT false,
    created_ts BIGINT NOT NULL
);

CREATE TABLE profiles (
    user_id TEXT PRIMARY KEY REFERENCES users (user_id),
    displayname TEXT,
    avatar_url TEXT,
    -- Further profile fields (spec v1.16 extended profiles), canonical JSON per key.
    extra JSONB NOT NULL DEFAULT '{}'
);

CREATE TABLE devices (
    user_id TEXT NOT NULL REFERENCES users (user_id),
    device_id TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Only the SHA-256 of a token is stored: a leaked database gives no session.
CREATE TABLE access_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time BIGINT
);

-- User-interactive authentication sessions.
CREATE TABLE ui_auth_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    -- What the session was started for (method and path), so it cannot be reused elsewhere.
    purpose TEXT NOT NULL,
    completed_stages JSONB NOT NULL DEFAULT '[]',
    -- Stage results worth keeping: the user id a password stage proved, the token used.
    results JSONB NOT NULL DEFAULT '{}'
);

-- Rooms and their events.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT,
    created_ts BIGINT NOT NULL,
    is_public BOOLEAN NOT NULL DEFAULT false
);


-- Every event, its JSON stored exactly as signed or received (canonical JSON text).
CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL UNIQUE,
    depth BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json TEXT NOT NULL,
    -- State before and after this event (after = before for non-state events).
    state_group_before BIGINT,
    state_group_after BIGINT,
    rejected_reason TEXT,
    outlier BOOLEAN NOT NULL DEFAULT false,
    -- Our own facts about the event, never sent to peers: prev_content and
    -- replaces_state of state events, invite_room_state, the sender's txn id.
    internal_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_member_target ON events (state_key, stream_ordering) WHERE type = 'm.room.member';

CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
);

CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Redactions: which event redacted which (the redacted JSON is computed when served).
CREATE TABLE redactions (
    event_id TEXT NOT NULL,
    redacts TEXT NOT NULL,
    PRIMARY KEY (event_id)
);
CREATE INDEX redactions_redacts ON redactions (redacts);

-- Idempotent sends: one event per (user, device, txn id).
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- State groups: each a delta from its parent, with a bounded chain length.
CREATE TABLE state_groups (
    id BIGSERIAL PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT REFERENCES state_groups (id),
    chain_length INTEGER NOT NULL
);

CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL REFERENCES state_groups (id),
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    -- NULL removes the key inherited from the parent group.
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
);

-- The current state of every room, materialised.
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- For m.room.member rows: the membership, so "rooms of a user" is one index scan.
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_members ON current_state (state_key, membership) WHERE type = 'm.room.member';

CREATE TABLE room_forgotten (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Account data, global (room_id = '') and per room, with its own stream.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);

CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
