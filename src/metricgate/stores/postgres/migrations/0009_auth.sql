-- Access control: users, roles, grants, API tokens, the invalidation epoch and the audit log.
-- Design: docs/design-auth.md B2 (approval tables come with the approvals migration).
--
-- Every grant is a row on a role, as in MLflow's auth store; a per-user grant sits on the user's
-- hidden role '__user_<id>__' (owner_user set, assigned to that user only). Patterns are text:
-- an experiment id, a model name, or '*'.

CREATE TABLE auth_users (
    user_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username <> '' AND length(username) <= 256),
    -- An argon2id PHC string (or an imported werkzeug hash); NULL: no password login.
    password_hash text,
    is_admin      boolean NOT NULL DEFAULT false,
    -- Bumped by every change to what the user's credentials prove (password, admin flag, token
    -- revoke): a cached credential carrying an older value is stale. Grants have their own epoch.
    cred_version  bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE auth_roles (
    role_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- metricgate has one workspace; MLflow's UI names it 'default'.
    workspace   text NOT NULL DEFAULT 'default' CHECK (workspace = 'default'),
    name        text NOT NULL CHECK (name <> ''),
    description text,
    -- Set on hidden per-user roles only; deleting the user deletes its role and grants.
    owner_user  bigint REFERENCES auth_users ON DELETE CASCADE,
    UNIQUE (workspace, name),
    CHECK (owner_user IS NULL OR name = '__user_' || owner_user || '__')
);
CREATE UNIQUE INDEX auth_roles_owner ON auth_roles (owner_user) WHERE owner_user IS NOT NULL;

CREATE TABLE auth_role_users (
    assignment_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES auth_users ON DELETE CASCADE,
    role_id       bigint NOT NULL REFERENCES auth_roles ON DELETE CASCADE,
    UNIQUE (user_id, role_id)
);
CREATE INDEX auth_role_users_role_idx ON auth_role_users (role_id);

-- grant_id is MLflow's role_permission id.
CREATE TABLE auth_grants (
    grant_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    role_id          bigint NOT NULL REFERENCES auth_roles ON DELETE CASCADE,
    resource_type    text NOT NULL CHECK (resource_type IN ('experiment', 'registered_model', 'workspace')),
    resource_pattern text NOT NULL CHECK (resource_pattern <> ''),
    permission       text NOT NULL CHECK (permission IN ('READ', 'USE', 'EDIT', 'MANAGE', 'DENY')),
    UNIQUE (role_id, resource_type, resource_pattern),
    CHECK (resource_type <> 'workspace' OR (resource_pattern = '*' AND permission IN ('USE', 'MANAGE')))
);
-- "Who holds what on this experiment or model", and the registry's rename/delete sweeps.
CREATE INDEX auth_grants_resource_idx ON auth_grants (resource_type, resource_pattern);

CREATE TABLE auth_tokens (
    token_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES auth_users ON DELETE CASCADE,
    name         text NOT NULL CHECK (name <> ''),
    -- sha256("metricgate-token-v1\0" + token): the token itself is never stored.
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    -- 'mgt_' + 6 characters, for listings.
    hint         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz,
    -- Written at most once a minute per token, so a busy token does not write per request.
    last_used_at timestamptz,
    revoked_at   timestamptz
);
-- A name identifies a live token; a revoked one frees its name.
CREATE UNIQUE INDEX auth_tokens_live_name ON auth_tokens (user_id, name) WHERE revoked_at IS NULL;
CREATE INDEX auth_tokens_user_idx ON auth_tokens (user_id, token_id);

-- One row, polled by each process once a second (docs/design-auth.md B3). A credential change
-- (password, admin flag, user delete, token revoke) bumps cred_epoch: the process drops its
-- credential and grant caches. A grant, role or assignment change bumps grant_epoch: only the
-- grant cache goes, so nobody's password is verified again. The grant a creator receives on an
-- experiment or model bumps neither (it only adds access; see PgAuthStore.grant_creator_manage).
CREATE TABLE auth_state (
    id          int PRIMARY KEY CHECK (id = 1),
    cred_epoch  bigint NOT NULL,
    grant_epoch bigint NOT NULL
);
INSERT INTO auth_state (id, cred_epoch, grant_epoch) VALUES (1, 1, 1);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- No foreign key: the entry outlives the user row, and `actor` keeps the name.
    actor_id    bigint,
    actor       text,
    auth_method text CHECK (auth_method IN ('basic', 'token', 'system')),
    client_addr inet,
    action      text NOT NULL,
    target_type text,
    target_id   text,
    details     jsonb NOT NULL DEFAULT '{}',
    request_id  text
);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);

-- Append-only: rows can be changed or removed only by a transaction that set
-- metricgate.audit_prune = 'on' (SET LOCAL), which only `metricgate audit prune` does.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('metricgate.audit_prune', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RETURN NULL;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
