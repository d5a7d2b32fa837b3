-- Small partial indexes for the operators' live view (/metrics, /metricgate/ingest), which
-- counts abandoned runs and failed webhook deliveries every few seconds: without them each
-- count scans the whole tags / deliveries table. Both hold only the rows they count.
CREATE INDEX tags_abandoned_idx ON tags (run_id) WHERE key = 'metricgate.abandoned';
CREATE INDEX webhook_deliveries_failed_idx ON webhook_deliveries (webhook_id) WHERE state = 'failed';
