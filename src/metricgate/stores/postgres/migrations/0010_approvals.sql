-- Registry approval policies: "entering stage S (or setting alias A) on model M needs N approvals
-- by users holding permission P on M". Design: docs/design-auth.md B6.
--
-- A request hangs off the model's surrogate key (registered_models.model_key, 0002_registry.sql),
-- so a rename keeps it and deleting the model removes it. Users are auth_users (0009_auth.sql).

CREATE TABLE approval_policies (
    policy_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_pattern       text NOT NULL CHECK (model_pattern <> ''),  -- a model name or '*'
    kind                text NOT NULL CHECK (kind IN ('stage', 'alias')),
    target              text NOT NULL CHECK (target <> ''),         -- a stage name or an alias
    approvals           int  NOT NULL CHECK (approvals BETWEEN 1 AND 20),
    approver_permission text NOT NULL
        CHECK (approver_permission IN ('READ', 'USE', 'EDIT', 'MANAGE')),
    created_by          bigint REFERENCES auth_users ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (model_pattern, kind, target)
);

CREATE TABLE approval_requests (
    request_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- No cascade: a policy with requests is deleted only once none is pending (the store says so);
    -- closed requests keep naming the policy they were made under, so it is SET NULL.
    policy_id        bigint REFERENCES approval_policies ON DELETE SET NULL,
    model_key        bigint NOT NULL REFERENCES registered_models ON DELETE CASCADE,
    version          integer NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('stage', 'alias')),
    target           text NOT NULL,
    archive_existing boolean NOT NULL DEFAULT false,
    requested_by     bigint REFERENCES auth_users ON DELETE SET NULL,
    requester        text NOT NULL,  -- the name survives the user row's deletion
    approvals_needed int NOT NULL,   -- the policy's N when the request was made
    approver_permission text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'applied', 'rejected', 'cancelled', 'superseded')),
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at        timestamptz,
    applied_event_id bigint  -- the registry_events row of the applied change
);
-- One pending request per target: a second transition asks to join it (ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX approval_one_pending ON approval_requests (model_key, version, kind, target)
    WHERE state = 'pending';
CREATE INDEX approval_requests_state_idx ON approval_requests (state, request_id DESC);

CREATE TABLE approval_votes (
    request_id bigint NOT NULL REFERENCES approval_requests ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES auth_users ON DELETE CASCADE,
    voter      text NOT NULL,
    decision   text NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment    text,
    voted_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (request_id, user_id)
);
