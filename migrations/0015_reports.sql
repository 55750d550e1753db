-- Reports of events, rooms and users, kept for the server's admins
-- (spec: client-server-api "Reporting content"; listed by the Synapse-shaped admin API).
-- kind 'event': room_id, event_id and target_user_id (the event's sender) are set;
-- kind 'room': room_id; kind 'user': target_user_id.
CREATE TABLE reports (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('event', 'room', 'user')),
    reporter TEXT NOT NULL,
    room_id TEXT,
    event_id TEXT,
    target_user_id TEXT,
    reason TEXT,
    score INTEGER,
    received_ts BIGINT NOT NULL
);
-- The admin lists page through one kind by id.
CREATE INDEX reports_kind_id ON reports (kind, id);
