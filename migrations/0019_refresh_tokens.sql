-- Refresh tokens, expiring access tokens, login tokens (MSC3882) and the admin
-- suspend and lock flags of users.
-- Spec: https://spec.matrix.org/v1.19/client-server-api/#refreshing-access-tokens

ALTER TABLE users
    ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN locked BOOLEAN NOT NULL DEFAULT false;

-- Only the SHA-256 of a refresh token is stored, as for access tokens.
CREATE TABLE refresh_tokens (
    id BIGSERIAL PRIMARY KEY,
    token_hash BYTEA NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- The token that a refresh with this one handed out. This one (and the access
    -- token issued with it) dies when that token's access token is first used, as
    -- in Synapse: a client that lost the answer of /refresh can still retry.
    replaced_by BIGINT REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_replaced_by ON refresh_tokens (replaced_by) WHERE replaced_by IS NOT NULL;

-- expires_ts: only tokens issued with refresh_token: true expire.
-- refresh_token_id: the refresh token issued with this access token; both die together.
ALTER TABLE access_tokens
    ADD COLUMN expires_ts BIGINT,
    ADD COLUMN refresh_token_id BIGINT REFERENCES refresh_tokens (id) ON DELETE CASCADE;

-- Short-lived single-use tokens of POST /login/get_token, for m.login.token.
CREATE TABLE login_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    expires_ts BIGINT NOT NULL
);
