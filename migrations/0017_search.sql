-- Server-side search (client-server API "Server Side Search"): a full-text index over the
-- searchable text of m.room.message bodies, room names and topics, kept by PostgreSQL as
-- events are written.

-- The text an event is searched by: content.body of a message, content.name of m.room.name,
-- content.topic of m.room.topic; '' for anything else. IMMUTABLE so that it may be indexed.
-- It never raises: events.json is the canonical JSON an event arrived with, and an event
-- whose JSON jsonb refuses must still be written. jsonb refuses the escape \u0000, so it is
-- dropped first (as homeserver/storage/rooms.py does); any other failure gives ''.
-- The exception block opens a subtransaction, but one that writes nothing takes no
-- transaction id, so bulk writes do not pile up subtransactions.
CREATE FUNCTION event_search_text(event_type TEXT, event_json TEXT) RETURNS TEXT
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    content JSONB;
    field TEXT;
BEGIN
    field := CASE event_type
        WHEN 'm.room.message' THEN 'body'
        WHEN 'm.room.name' THEN 'name'
        WHEN 'm.room.topic' THEN 'topic'
    END;
    IF field IS NULL THEN
        RETURN '';
    END IF;
    content := regexp_replace(event_json, '(?<!\\)((?:\\\\)*)\\u0000', '\1', 'g')::jsonb -> 'content';
    IF jsonb_typeof(content) IS DISTINCT FROM 'object' OR jsonb_typeof(content -> field) IS DISTINCT FROM 'string' THEN
        RETURN '';
    END IF;
    RETURN content ->> field;
EXCEPTION WHEN others THEN
    RETURN '';
END
$$;

-- The event's words, computed by PostgreSQL in the insert that writes the event (a stored
-- generated column: nothing in the write path has to know about it), NULL for events that
-- are not searched. Stored rather than an index on the expression alone so that ranking and
-- the index's rechecks read the vector instead of parsing the JSON again for every match.
ALTER TABLE events ADD COLUMN search_vector TSVECTOR GENERATED ALWAYS AS (
    CASE WHEN type IN ('m.room.message', 'm.room.name', 'm.room.topic')
         THEN to_tsvector('simple'::regconfig, event_search_text(type, json)) END
) STORED;

CREATE INDEX events_search ON events USING GIN (search_vector) WHERE search_vector IS NOT NULL;
