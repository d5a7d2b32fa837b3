"""Settings for a command, or the one-line configuration error every command prints (exit 2)."""

from __future__ import annotations

import sys
from typing import Any

from metricgate.config import ConfigError, Settings


def settings_or_report(**overrides: Any) -> Settings | None:
    """``Settings.from_env`` with the command line's overrides; None once the error is printed."""
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        print(f"metricgate: configuration error: {exc}", file=sys.stderr)
        return None
