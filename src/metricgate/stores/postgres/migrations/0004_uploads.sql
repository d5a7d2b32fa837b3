-- Resumable upload sessions (metricgate's own upload API) and artifact references.
-- See docs/design-artifacts.md for the state machine and what is visible when.

CREATE TABLE upload_sessions (
    session_id          text        PRIMARY KEY,           -- 32 lowercase hex characters
    run_id              text        NOT NULL REFERENCES runs ON DELETE CASCADE,
    -- Destination relative to the run's artifact root, and the same as a store path.
    rel_path            text        NOT NULL,
    dest_path           text        NOT NULL,
    -- A directory session commits several files under dest_path; a file session exactly one at it.
    is_directory        boolean     NOT NULL,
    state               text        NOT NULL DEFAULT 'open'
                        CHECK (state IN ('open', 'committing', 'committed', 'aborted', 'expired')),
    part_size_bytes     bigint      NOT NULL CHECK (part_size_bytes > 0),
    expires_at          timestamptz NOT NULL,
    -- While committing: the committer's liveness. A stale heartbeat means the committer died
    -- and any gateway may roll the commit forward.
    commit_heartbeat_at timestamptz,
    failure             text,
    actor               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- The sweeper's two scans: open sessions past their expiry, commits whose committer went quiet.
CREATE INDEX upload_sessions_open_expiry_idx ON upload_sessions (expires_at) WHERE state = 'open';
CREATE INDEX upload_sessions_committing_idx ON upload_sessions (commit_heartbeat_at) WHERE state = 'committing';
-- Reads hide destinations of sessions being committed; this keeps that lookup an index scan.
CREATE INDEX upload_sessions_committing_dest_idx ON upload_sessions (dest_path text_pattern_ops)
    WHERE state = 'committing';

CREATE TABLE upload_files (
    session_id      text    NOT NULL REFERENCES upload_sessions ON DELETE CASCADE,
    file_index      integer NOT NULL CHECK (file_index >= 0),
    -- Relative to the session's destination ('' for a file session).
    rel_path        text    NOT NULL,
    dest_path       text    NOT NULL,
    size_bytes      bigint  NOT NULL CHECK (size_bytes >= 0),
    sha256          text,
    staging_id      text    NOT NULL,
    part_count      integer NOT NULL CHECK (part_count BETWEEN 1 AND 10000),
    committed_at    timestamptz,
    PRIMARY KEY (session_id, file_index),
    UNIQUE (session_id, rel_path)
);
CREATE INDEX upload_files_staging_idx ON upload_files (staging_id);

CREATE TABLE upload_parts (
    session_id   text        NOT NULL,
    file_index   integer     NOT NULL,
    part_number  integer     NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    size_bytes   bigint      NOT NULL CHECK (size_bytes >= 0),
    sha256       text        NOT NULL,
    etag         text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, file_index, part_number),
    FOREIGN KEY (session_id, file_index) REFERENCES upload_files ON DELETE CASCADE
);

CREATE TABLE artifact_references (
    run_id         text        NOT NULL REFERENCES runs ON DELETE CASCADE,
    rel_path       text        NOT NULL,                  -- relative to the run's artifact root
    dest_path      text        NOT NULL,                  -- the store path it appears at
    uri            text        NOT NULL,
    size_bytes     bigint      NOT NULL CHECK (size_bytes >= 0),
    sha256         text,
    etag           text,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, rel_path)
);
-- Every download and listing looks up references at or under a path: an equality or a
-- byte-order range ('dir/' <= dest_path < 'dir0'), which this "C"-collated index answers.
CREATE UNIQUE INDEX artifact_references_dest_idx ON artifact_references ((dest_path COLLATE "C"));
