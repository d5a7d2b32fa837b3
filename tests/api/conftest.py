"""API-test helpers: a thin MLflow-REST wrapper (``api``) over the shared ``client`` fixture.

``Api``'s shortcuts (create_experiment, create_run, create_registered_model, ...) are the async
twins of ``tests/factories.py``'s ``Rest`` for a live server.

``db_url``, ``settings`` and ``client`` come from tests/conftest.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"

JSON_CONTENT_TYPE = "application/json"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Reply:
    method: str
    path: str
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    @property
    def json(self) -> Any:
        # Strict JSON (orjson rejects bare NaN/Infinity), as the MLflow client's parser would.
        return orjson.loads(self.raw)

    def __repr__(self) -> str:
        return f"<{self.method} {self.path} -> {self.status} {self.text[:500]!r}>"

    def ok(self) -> Any:
        """Assert MLflow's success shape (exactly 200 + a JSON object) and return the object."""
        assert self.status == 200, self
        assert self.content_type == JSON_CONTENT_TYPE, self
        body = self.json
        assert isinstance(body, dict), self
        return body

    def error(
        self,
        status: int | tuple[int, ...],
        code: str | tuple[str, ...] | None = None,
        message: str | None = None,
    ) -> str:
        """Assert MLflow's error shape and return the message.

        ``message`` must be contained in the reply's message (exact match: compare the return value).
        """
        statuses = status if isinstance(status, tuple) else (status,)
        assert self.status in statuses, self
        assert self.status != 500, self
        assert self.content_type == JSON_CONTENT_TYPE, self
        assert "Traceback" not in self.text, self
        body = self.json
        assert isinstance(body, dict), self
        assert isinstance(body.get("error_code"), str), self
        assert isinstance(body.get("message"), str) and body["message"], self
        if code is not None:
            codes = code if isinstance(code, tuple) else (code,)
            assert body["error_code"] in codes, self
        if message is not None:
            assert message in body["message"], self
        return body["message"]


class Api:
    """MLflow REST calls through the aiohttp test client."""

    def __init__(self, client: TestClient[Any, Any], prefix: str = API) -> None:
        self.client = client
        self.prefix = prefix

    # ------------------------------------------------------------ raw calls

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        absolute: bool = False,
    ) -> Reply:
        url = path if absolute else self.prefix + path
        hdrs = dict(headers or {})
        if body is not None:
            data = orjson.dumps(body)
            hdrs.setdefault("Content-Type", JSON_CONTENT_TYPE)
        async with self.client.request(method, url, data=data, params=params, headers=hdrs) as resp:
            raw = await resp.read()
            return Reply(method, url, resp.status, resp.headers, raw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request(
            "POST", path, body={} if body is None and "data" not in kw else body, **kw
        )

    async def get(self, path: str, params: Any = None, **kw: Any) -> Reply:
        return await self.request("GET", path, params=params, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PATCH", path, body={} if body is None else body, **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("DELETE", path, body=body, **kw)

    # ------------------------------------------------------------ shortcuts

    async def create_experiment(self, name: str | None = None, **extra: Any) -> str:
        name = name or f"exp-{time.monotonic_ns()}"
        body = (await self.post("/experiments/create", {"name": name, **extra})).ok()
        assert isinstance(body["experiment_id"], str)
        return body["experiment_id"]

    async def create_run(self, experiment_id: str | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"start_time": now_ms(), "user_id": "tester", **extra}
        if experiment_id is not None:
            body["experiment_id"] = experiment_id
        return (await self.post("/runs/create", body)).ok()["run"]

    async def new_run_id(self, experiment_id: str | None = None) -> str:
        if experiment_id is None:
            experiment_id = await self.create_experiment()
        return (await self.create_run(experiment_id))["info"]["run_id"]

    async def create_registered_model(self, name: str, **extra: Any) -> dict[str, Any]:
        body = {"name": name, **extra}
        model: dict[str, Any] = (await self.post("/registered-models/create", body)).ok()[
            "registered_model"
        ]
        return model

    async def create_model_version(self, name: str, source: str, **extra: Any) -> dict[str, Any]:
        body = {"name": name, "source": source, **extra}
        version: dict[str, Any] = (await self.post("/model-versions/create", body)).ok()[
            "model_version"
        ]
        return version

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return (await self.get("/runs/get", {"run_id": run_id})).ok()["run"]

    async def log_metric(
        self, run_id: str, key: str, value: Any, timestamp: Any = None, step: Any = 0
    ) -> Reply:
        body = {
            "run_id": run_id,
            "key": key,
            "value": value,
            "timestamp": now_ms() if timestamp is None else timestamp,
        }
        if step is not None:
            body["step"] = step
        return await self.post("/runs/log-metric", body)

    async def log_batch(
        self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()
    ) -> Reply:
        return await self.post(
            "/runs/log-batch",
            {
                "run_id": run_id,
                "metrics": list(metrics),
                "params": list(params),
                "tags": list(tags),
            },
        )

    async def history(self, run_id: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """The full history, following page tokens."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(1000):
            query = {"run_id": run_id, "metric_key": key, **params}
            if token:
                query["page_token"] = token
            body = (await self.get("/metrics/get-history", query)).ok()
            out.extend(body.get("metrics", []))
            token = body.get("next_page_token")
            if not token:
                return out
        raise AssertionError("get-history never stopped paging")


@pytest.fixture
def api(client: TestClient[Any, Any]) -> Api:
    return Api(client)


@pytest.fixture
def ajax(client: TestClient[Any, Any]) -> Api:
    return Api(client, AJAX)
