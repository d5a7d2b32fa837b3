"""What the deploy/ checks compare the files against: the settings config.py really reads, the
commands cli.py really parses and the routes the app really serves."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from metricgate.cli import build_parser
from metricgate.config import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


class _RecordingEnv(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.looked_up.add(key)
        return super().get(key, default)


def metricgate_env_names() -> frozenset[str]:
    """Every METRICGATE_* variable Settings.from_env reads (found by watching it read)."""
    env = _RecordingEnv()
    Settings.from_env(env)
    return frozenset(name for name in env.looked_up if name.startswith(ENV_PREFIX))


def assert_known_env(names: Iterator[str] | set[str], where: str) -> None:
    known = metricgate_env_names()
    unknown = sorted(n for n in names if n.startswith(ENV_PREFIX) and n not in known)
    assert not unknown, f"{where} sets variables config.py does not read: {unknown}"


def settings_from(env: Mapping[str, str]) -> Settings:
    """Settings as the container would build them (raises ConfigError on a bad value)."""
    return Settings.from_env({k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})


def parse_command(args: list[str]) -> argparse.Namespace:
    """The container's arguments after the `metricgate` entrypoint, parsed by the real CLI."""
    return build_parser().parse_args(args)


def app_get_paths() -> set[str]:
    from metricgate.api.health import ROUTES

    return {route.path for route in ROUTES if route.method == "GET"}


def load_all(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]
