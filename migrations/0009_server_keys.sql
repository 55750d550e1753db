-- Other servers' signing keys: for each (server, key id), the key response that
-- gave it, exactly as the server signed it (canonical JSON text, never JSONB: the
-- signatures must still verify when we serve it again as a notary).
-- valid_until_ts is the response's own; a newer fetch replaces a row only when its
-- response is valid at least as long, so a stale notary answer cannot roll keys back.
CREATE TABLE server_keys_json (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
