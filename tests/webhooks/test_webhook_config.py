"""METRICGATE_WEBHOOK_* settings: parsed with the other settings, refused when nonsensical."""

from __future__ import annotations

import pytest

from metricgate.config import ConfigError, Settings, WebhookSettings


def test_defaults_and_environment() -> None:
    assert Settings.from_env({}).webhooks == WebhookSettings()
    hooks = Settings.from_env(
        {
            "METRICGATE_WEBHOOK_ENABLED": "false",
            "METRICGATE_WEBHOOK_MAX_ATTEMPTS": "3",
            "METRICGATE_WEBHOOK_TIMEOUT_S": "2.5",
            "METRICGATE_WEBHOOK_CONCURRENCY": "32",
            "METRICGATE_WEBHOOK_PER_WEBHOOK_CONCURRENCY": "1",
            "METRICGATE_WEBHOOK_BACKOFF_BASE_S": "0.5",
            "METRICGATE_WEBHOOK_BACKOFF_MAX_S": "60",
            "METRICGATE_WEBHOOK_POLL_INTERVAL_S": "0.2",
            "METRICGATE_WEBHOOK_RETENTION_DAYS": "0",
        }
    ).webhooks
    assert hooks == WebhookSettings(
        enabled=False, max_attempts=3, timeout_s=2.5, concurrency=32, per_webhook_concurrency=1,
        backoff_base_s=0.5, backoff_max_s=60.0, poll_interval_s=0.2, retention_days=0.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "name, value",
    [
        ("WEBHOOK_MAX_ATTEMPTS", "0"), ("WEBHOOK_CONCURRENCY", "0"), ("WEBHOOK_PER_WEBHOOK_CONCURRENCY", "0"),
        ("WEBHOOK_TIMEOUT_S", "0"), ("WEBHOOK_POLL_INTERVAL_S", "-1"), ("WEBHOOK_BACKOFF_BASE_S", "0"),
        ("WEBHOOK_BACKOFF_MAX_S", "0.1"), ("WEBHOOK_RETENTION_DAYS", "-1"), ("WEBHOOK_ENABLED", "perhaps"),
        ("WEBHOOK_MAX_ATTEMPTS", "many"),
    ],
)  # fmt: skip
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({f"METRICGATE_{name}": value})
