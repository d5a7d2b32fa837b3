-- Model registry: registered models, versions, tags, aliases, and the audit/outbox table.
-- Times are int64 milliseconds since the epoch, as MLflow sends them.

-- A surrogate key lets a rename touch one row: versions, tags and aliases hang off model_key.
CREATE TABLE registered_models (
    model_key              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                   text    NOT NULL,
    description            text,
    user_id                text,
    creation_timestamp     bigint  NOT NULL,
    last_updated_timestamp bigint  NOT NULL,
    -- The per-model version counter. create-version increments it with UPDATE ... RETURNING,
    -- which row-locks the model until COMMIT: concurrent registrations queue on this row, and a
    -- failed one rolls its increment back, so versions are 1, 2, 3... with no gaps. Deleted
    -- versions are not reused (the counter never goes down), as in MLflow.
    last_version           integer NOT NULL DEFAULT 0,
    CONSTRAINT registered_models_name_key UNIQUE (name)
);

CREATE TABLE registered_model_tags (
    model_key bigint NOT NULL REFERENCES registered_models ON DELETE CASCADE,
    key       text   NOT NULL,
    value     text   NOT NULL,
    PRIMARY KEY (model_key, key)
);

CREATE TABLE model_versions (
    model_key              bigint  NOT NULL REFERENCES registered_models ON DELETE CASCADE,
    version                integer NOT NULL,
    creation_timestamp     bigint  NOT NULL,
    last_updated_timestamp bigint  NOT NULL,
    user_id                text,
    current_stage          text    NOT NULL DEFAULT 'None',
    description            text,
    source                 text    NOT NULL,
    -- Where the files are: the source with runs:/ and models:/ resolved at registration time.
    storage_location       text    NOT NULL,
    run_id                 text,
    run_link               text,
    model_id               text,   -- the MLflow 3 logged model behind the version, if any
    status                 text    NOT NULL DEFAULT 'READY',
    status_message         text,
    PRIMARY KEY (model_key, version)
);
-- get-latest-versions: the highest version per stage.
CREATE INDEX model_versions_stage_idx ON model_versions (model_key, current_stage, version DESC);
CREATE INDEX model_versions_run_idx ON model_versions (run_id);

CREATE TABLE model_version_tags (
    model_key bigint  NOT NULL,
    version   integer NOT NULL,
    key       text    NOT NULL,
    value     text    NOT NULL,
    PRIMARY KEY (model_key, version, key),
    FOREIGN KEY (model_key, version) REFERENCES model_versions ON DELETE CASCADE
);

-- One alias names one version; deleting the version drops its aliases (the cascade is a
-- backstop: the store deletes them first so that it can record alias.deleted events).
CREATE TABLE registered_model_aliases (
    model_key bigint  NOT NULL,
    alias     text    NOT NULL,
    version   integer NOT NULL,
    PRIMARY KEY (model_key, alias),
    FOREIGN KEY (model_key, version) REFERENCES model_versions ON DELETE CASCADE
);

-- Audit history and outbox: every registry change inserts its rows here in the same
-- transaction as the change. The webhooks migration (0003) builds on this table: keep the
-- columns as they are.
CREATE TABLE registry_events (
    id             bigserial   PRIMARY KEY,
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    event_type     text        NOT NULL,
    model_name     text        NOT NULL,  -- the name at the time of the event (after a rename: the new name)
    version        integer,               -- NULL for model-level events
    actor          text,                  -- the user name the client sent; NULL if none
    actor_verified boolean     NOT NULL DEFAULT false,  -- false until authentication exists
    before         jsonb,                 -- the changed fields before (NULL on create)
    after          jsonb,                 -- the changed fields after (NULL on delete)
    comment        text
);
-- History reads: newest first per model, optionally per version.
CREATE INDEX registry_events_model_idx ON registry_events (model_name, id DESC);
CREATE INDEX registry_events_version_idx ON registry_events (model_name, version, id DESC);
-- History of a renamed-away name also shows the rename ("a" -> "b" appears under "a").
CREATE INDEX registry_events_renamed_from_idx ON registry_events ((before ->> 'name'))
    WHERE event_type = 'registered_model.renamed';
