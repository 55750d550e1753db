-- The media repository. File bytes live on disk under data_dir/media, named by
-- their SHA-256 (hex); these rows are the metadata and the reference counts:
-- a file is deleted when no row of media, remote_media or media_thumbnails
-- names its sha256 any more.

-- Media uploaded here: mxc://<our server name>/<media_id>.
CREATE TABLE media (
    media_id TEXT PRIMARY KEY,
    -- The uploader, or for POST /_matrix/media/v1/create the creator: only they may upload.
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- NULL until the content is uploaded (async uploads created with /create).
    sha256 TEXT,
    size BIGINT,
    content_type TEXT,
    upload_name TEXT,
    uploaded_ts BIGINT,
    -- An id created with /create and never uploaded is forgotten after this time.
    unused_expires_ts BIGINT,
    last_access_ts BIGINT,
    -- Set by an admin: quarantined media answers 404 everywhere.
    quarantined_by TEXT,
    CHECK ((sha256 IS NULL) = (size IS NULL))
);
CREATE INDEX media_user ON media (user_id, created_ts);
CREATE INDEX media_sha256 ON media (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX media_pending ON media (unused_expires_ts) WHERE sha256 IS NULL;

-- Media of other servers, cached here once fetched over federation; purged on its own.
CREATE TABLE remote_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    upload_name TEXT,
    fetched_ts BIGINT NOT NULL,
    last_access_ts BIGINT,
    quarantined_by TEXT,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX remote_media_sha256 ON remote_media (sha256);
CREATE INDEX remote_media_fetched ON remote_media (fetched_ts);

-- Thumbnails of local (origin = '') and remote media, stored in the same content store.
-- width and height are those of the thumbnail made, which for 'scale' keeps the
-- image's aspect and so may differ from the size asked for.
CREATE TABLE media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    content_type TEXT NOT NULL,
    animated BOOLEAN NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method, content_type, animated)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);
