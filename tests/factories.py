"""Experiments, runs and registered models made through the REST API, for tests that need some.

``Rest`` is the synchronous flavour (``requests``) for a live server; ``Api`` in
``tests/api/conftest.py`` has the same shortcuts, async, over the in-process aiohttp test client.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests

API = "/api/2.0/mlflow"


def now_ms() -> int:
    return int(time.time() * 1000)


def unique(prefix: str) -> str:
    """``prefix-<hex>``: a name no other test (nor an earlier one on a shared server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Rest:
    """Raw HTTP against a live server, plus shortcuts that make what a test needs to exist."""

    base_url: str

    def url(self, path: str) -> str:
        return f"{self.base_url}{API}/{path.lstrip('/')}"

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return requests.post(self.url(path), json=body, timeout=30, **kwargs)

    def get(self, path: str, params: Any = None) -> requests.Response:
        return requests.get(self.url(path), params=params, timeout=30)

    def ok(self, path: str, body: Any) -> dict[str, Any]:
        """POST ``body`` and return the JSON object of a 200 reply (asserted)."""
        reply = self.post(path, body)
        assert reply.status_code == 200, (path, reply.status_code, reply.text[:500])
        answer = reply.json()
        assert isinstance(answer, dict), answer
        return answer

    # ------------------------------------------------------------ factories

    def create_experiment(self, name: str | None = None, **extra: Any) -> str:
        answer = self.ok("experiments/create", {"name": name or unique("exp"), **extra})
        return str(answer["experiment_id"])

    def create_run(self, experiment_id: str = "0", **extra: Any) -> dict[str, Any]:
        body = {"experiment_id": experiment_id, "start_time": now_ms(), "user_id": "tester"}
        run: dict[str, Any] = self.ok("runs/create", {**body, **extra})["run"]
        return run

    def new_run_id(self, experiment_id: str | None = None) -> str:
        """A run in ``experiment_id``, or in an experiment of its own."""
        run = self.create_run(experiment_id or self.create_experiment())
        return str(run["info"]["run_id"])

    def create_registered_model(self, name: str | None = None, **extra: Any) -> str:
        answer = self.ok("registered-models/create", {"name": name or unique("model"), **extra})
        return str(answer["registered_model"]["name"])

    def create_model_version(self, name: str, source: str, **extra: Any) -> dict[str, Any]:
        body = {"name": name, "source": source, **extra}
        version: dict[str, Any] = self.ok("model-versions/create", body)["model_version"]
        return version
