"""Signed webhooks for registry events: subscriptions, an outbox in PostgreSQL and a dispatcher."""
