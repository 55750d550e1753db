-- Event relationships (m.relates_to with a rel_type): one row per child event,
-- written in the same statement as the event and deleted when the child is
-- redacted, so that a redacted relation leaves every aggregation at once.
-- Spec: client-server-api/#forming-relationships-between-events
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    -- m.annotation's key (the reaction), NULL for other relation types.
    aggregation_key TEXT
);
-- Children of a parent (the relations API, bundled aggregations, duplicate reactions).
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, rel_type);
-- The threads of a room (GET /threads).
CREATE INDEX event_relations_room_type ON event_relations (room_id, rel_type);

-- Events stored before this table existed, unless redacted in their own room.
INSERT INTO event_relations (event_id, room_id, relates_to_id, rel_type, aggregation_key)
SELECT e.event_id, e.room_id, rel ->> 'event_id', rel ->> 'rel_type',
    CASE WHEN rel ->> 'rel_type' = 'm.annotation' AND jsonb_typeof(rel -> 'key') = 'string'
         THEN rel ->> 'key' END
FROM events e
CROSS JOIN LATERAL (SELECT e.json::jsonb -> 'content' -> 'm.relates_to' AS rel) r
WHERE e.json LIKE '%m.relates_to%'
  -- jsonb refuses the NUL character that canonical JSON may carry as \u0000.
  AND e.json NOT LIKE '%\\u0000%'
  AND jsonb_typeof(rel) = 'object'
  AND jsonb_typeof(rel -> 'rel_type') = 'string'
  AND jsonb_typeof(rel -> 'event_id') = 'string'
  AND e.rejected_reason IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM redactions red JOIN events r2 ON r2.event_id = red.event_id
      WHERE red.redacts = e.event_id AND r2.room_id = e.room_id
  );
