-- Signed webhooks for the model registry: subscriptions, a delivery outbox and its attempt log.
-- Design: docs/design-webhooks.md.

CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    url         text NOT NULL,
    -- Exact event types ('model_version.stage_changed'), family patterns ('model_version.*') or '*'.
    events      text[] NOT NULL,
    -- NULL: events of every registered model.
    model_name  text,
    -- Kept in clear: the server must compute HMAC-SHA256 with it on every delivery.
    secret      text NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    description text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The outbox. A row per (webhook, event) is written by the trigger below in the transaction that
-- records the registry event, so a committed change always has its deliveries and an aborted one
-- never does. Dispatchers claim due rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id      bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- registry_events.id; NULL for a test ping. No foreign key: the payload is a snapshot.
    event_id        bigint,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    -- Attempts started; also the fencing token a dispatcher must still match to record a result.
    attempts        integer NOT NULL DEFAULT 0,
    -- Due time while pending; while an attempt is in flight, the end of its lease.
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at    timestamptz,
    last_error      text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at DESC);

CREATE TABLE webhook_delivery_attempts (
    delivery_id   uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    -- in_progress | delivered | retry | failed | interrupted (the dispatcher died mid-attempt)
    outcome       text NOT NULL,
    http_status   integer,
    error         text,
    duration_ms   integer,
    next_retry_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);

-- Fan-out: one pending delivery per matching active webhook, in the event's own transaction.
-- This is what makes the outbox immune to bigserial ids committing out of order: there is no
-- "id > cursor" relay that could step over an id whose transaction commits late.
-- occurred_at is rendered in UTC here, not by the session TimeZone, so payloads never depend on it.
CREATE FUNCTION webhook_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload)
    SELECT w.id, NEW.id, NEW.event_type, jsonb_build_object(
               'id', NEW.id,
               'type', NEW.event_type,
               'occurred_at', to_char(NEW.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'model_name', NEW.model_name,
               'version', NEW.version,
               'actor', NEW.actor,
               'actor_verified', NEW.actor_verified,
               'before', NEW.before,
               'after', NEW.after,
               'comment', NEW.comment)
    FROM webhooks w
    WHERE w.active
      AND (w.model_name IS NULL OR w.model_name = NEW.model_name)
      AND (NEW.event_type = ANY (w.events)
           OR '*' = ANY (w.events)
           OR split_part(NEW.event_type, '.', 1) || '.*' = ANY (w.events));
    RETURN NULL;
END
$$;

-- registry_events comes from 0002_registry.sql.
CREATE TRIGGER registry_events_webhook_fan_out
    AFTER INSERT ON registry_events
    FOR EACH ROW EXECUTE FUNCTION webhook_fan_out();
