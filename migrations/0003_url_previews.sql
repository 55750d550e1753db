-- URL previews (GET /_matrix/client/v1/media/preview_url), kept with their
-- fetch time so a client asking for a preview "as of ts" gets the one nearest
-- that time, and with an expiry after which the page is fetched again.
CREATE TABLE url_previews (
    url TEXT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL,
    -- The OpenGraph object sent to clients, as JSON text.
    og TEXT NOT NULL,
    -- The page's image, stored as local media (og:image is its mxc:// URI).
    media_id TEXT,
    PRIMARY KEY (url, fetched_ts)
);
CREATE INDEX url_previews_expires ON url_previews (expires_ts);
