-- Core tracking schema: experiments, runs, params, tags, metrics, inputs/outputs, logged models.
-- Times are int64 milliseconds since the epoch, as MLflow sends them.

CREATE TABLE experiments (
    experiment_id     bigint PRIMARY KEY,
    name              text   NOT NULL,
    artifact_location text   NOT NULL,
    lifecycle_stage   text   NOT NULL DEFAULT 'active',
    creation_time     bigint NOT NULL,
    last_update_time  bigint NOT NULL,
    CONSTRAINT experiments_name_key UNIQUE (name)
);
-- Experiment "0" is MLflow's Default; new ids start at 1.
CREATE SEQUENCE experiments_id_seq START 1 OWNED BY experiments.experiment_id;
INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)
VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active',
        (extract(epoch FROM now()) * 1000)::bigint, (extract(epoch FROM now()) * 1000)::bigint);

CREATE TABLE experiment_tags (
    experiment_id bigint NOT NULL REFERENCES experiments ON DELETE CASCADE,
    key           text   NOT NULL,
    value         text   NOT NULL,
    PRIMARY KEY (experiment_id, key)
);

CREATE TABLE runs (
    run_id          text   PRIMARY KEY,          -- 32 lowercase hex characters
    experiment_id   bigint NOT NULL REFERENCES experiments,
    run_name        text   NOT NULL DEFAULT '',
    user_id         text   NOT NULL DEFAULT '',
    status          text   NOT NULL DEFAULT 'RUNNING',
    start_time      bigint,
    end_time        bigint,
    lifecycle_stage text   NOT NULL DEFAULT 'active',
    artifact_uri    text   NOT NULL,
    deleted_time    bigint
);
-- The default search order is start_time DESC, run_id within a set of experiments.
CREATE INDEX runs_experiment_start_idx ON runs (experiment_id, start_time DESC, run_id);
-- The abandoned-run janitor looks only at runs still running.
CREATE INDEX runs_running_idx ON runs (start_time) WHERE status = 'RUNNING' AND lifecycle_stage = 'active';

CREATE TABLE params (
    run_id text NOT NULL REFERENCES runs ON DELETE CASCADE,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE tags (
    run_id text NOT NULL REFERENCES runs ON DELETE CASCADE,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- Full metric history. No foreign key: the ingest path bulk-loads here and checks the run
-- before it acknowledges. PostgreSQL orders NaN as equal to itself, so the unique index also
-- deduplicates an identical (key, step, timestamp, value) point, as MLflow does, and makes a
-- replayed batch a no-op. The same index serves get-history (run, key ordered by step).
CREATE TABLE metrics (
    run_id         text             NOT NULL,
    key            text             NOT NULL,
    step           bigint           NOT NULL,
    timestamp_ms   bigint           NOT NULL,
    value          double precision NOT NULL,
    model_id       text,
    dataset_name   text,
    dataset_digest text
);
CREATE UNIQUE INDEX metrics_point_idx ON metrics (run_id, key, step, timestamp_ms, value);

-- Latest value per (run, key): highest step, then timestamp, then value (MLflow's rule).
CREATE TABLE latest_metrics (
    run_id       text             NOT NULL,
    key          text             NOT NULL,
    step         bigint           NOT NULL,
    timestamp_ms bigint           NOT NULL,
    value        double precision NOT NULL,
    model_id     text,
    PRIMARY KEY (run_id, key)
);
-- Search sorts and filters runs by one metric key.
CREATE INDEX latest_metrics_key_value_idx ON latest_metrics (key, value);

CREATE TABLE datasets (
    dataset_id    text   PRIMARY KEY,
    experiment_id bigint NOT NULL REFERENCES experiments ON DELETE CASCADE,
    name          text   NOT NULL,
    digest        text   NOT NULL,
    source_type   text   NOT NULL DEFAULT '',
    source        text   NOT NULL DEFAULT '',
    schema        text,
    profile       text,
    CONSTRAINT datasets_identity_key UNIQUE (experiment_id, name, digest)
);

CREATE TABLE run_dataset_inputs (
    run_id     text  NOT NULL REFERENCES runs ON DELETE CASCADE,
    dataset_id text  NOT NULL REFERENCES datasets ON DELETE CASCADE,
    -- input tags as [{"key":..,"value":..}], e.g. mlflow.data.context
    tags       jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, dataset_id)
);

CREATE TABLE logged_models (
    model_id                  text   PRIMARY KEY,     -- 'm-' + 32 hex
    experiment_id             bigint NOT NULL REFERENCES experiments,
    name                      text   NOT NULL,
    artifact_location         text   NOT NULL,
    creation_timestamp_ms     bigint NOT NULL,
    last_updated_timestamp_ms bigint NOT NULL,
    status                    text   NOT NULL DEFAULT 'LOGGED_MODEL_PENDING',
    lifecycle_stage           text   NOT NULL DEFAULT 'active',
    model_type                text,
    source_run_id             text,
    status_message            text
);
CREATE INDEX logged_models_experiment_idx ON logged_models (experiment_id, creation_timestamp_ms DESC);
CREATE INDEX logged_models_source_run_idx ON logged_models (source_run_id);

CREATE TABLE logged_model_params (
    model_id text NOT NULL REFERENCES logged_models ON DELETE CASCADE,
    key      text NOT NULL,
    value    text NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE logged_model_tags (
    model_id text NOT NULL REFERENCES logged_models ON DELETE CASCADE,
    key      text NOT NULL,
    value    text NOT NULL,
    PRIMARY KEY (model_id, key)
);

-- Metrics logged with a model_id. One run point can belong to several models (log_model
-- re-sends a run's step-0 metrics with each new model's id), so they live apart from `metrics`,
-- whose unique index would fold those copies into the original point.
CREATE TABLE logged_model_metrics (
    model_id       text             NOT NULL,
    run_id         text             NOT NULL,
    key            text             NOT NULL,
    step           bigint           NOT NULL,
    timestamp_ms   bigint           NOT NULL,
    value          double precision NOT NULL,
    dataset_name   text,
    dataset_digest text
);
CREATE UNIQUE INDEX logged_model_metrics_point_idx
    ON logged_model_metrics (model_id, key, step, timestamp_ms, value, run_id);

CREATE TABLE run_model_inputs (
    run_id   text NOT NULL REFERENCES runs ON DELETE CASCADE,
    model_id text NOT NULL,
    PRIMARY KEY (run_id, model_id)
);

CREATE TABLE run_model_outputs (
    run_id   text   NOT NULL REFERENCES runs ON DELETE CASCADE,
    model_id text   NOT NULL,
    step     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, model_id)
);
