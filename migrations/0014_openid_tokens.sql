-- OpenID tokens: a user proves who they are to a third party (Element Call's LiveKit
-- service, widgets, integration managers), which checks the token with our federation
-- GET /openid/userinfo. Only the SHA-256 of a token is kept, as for access tokens.
-- Spec: https://spec.matrix.org/v1.19/client-server-api/#openid
CREATE TABLE openid_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    expires_ts BIGINT NOT NULL
);

-- Expired tokens are deleted oldest first.
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
