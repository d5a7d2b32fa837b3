"""E2E-only helpers: the real ``mlflow`` client against a live ``metricgate serve`` process.

``live_server`` and ``mlflow_tracking`` come from ``tests/conftest.py``; everything here builds on
them. The tests are synchronous because the mlflow client is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from tests.factories import Rest
from tests.stock_mlflow import stock_mlflow_server


@pytest.fixture(scope="module")
def stock_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a stock ``mlflow server`` (SQLite backend, proxied local artifacts): the oracle
    the comparison tests hold metricgate against. One per module: each writes its own data."""
    with stock_mlflow_server(tmp_path_factory.mktemp("stock-mlflow")) as url:
        yield url


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("sweep")`` -> ``"sweep-<test>-<hex>"``: experiment names never collide."""
    test = request.node.name.replace("[", "-").replace("]", "")[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def mlclient(mlflow_tracking: str) -> Any:
    """An ``MlflowClient`` bound to the live server (``client`` is the aiohttp test client)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_tracking)


@pytest.fixture
def experiment(mlflow_tracking: str, unique_name: Callable[[str], str]) -> Any:
    """A fresh experiment made active with ``mlflow.set_experiment`` (as a user script does)."""
    import mlflow

    return mlflow.set_experiment(unique_name("exp"))


@pytest.fixture
def rest(mlflow_tracking: str) -> Rest:
    """Raw HTTP against the live server, for what the client would never send (limits, junk)."""
    return Rest(mlflow_tracking)


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    """150 rows x 4 features, 3 classes: trains in milliseconds."""
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data, data.target


@pytest.fixture
def sklearn_autolog_off() -> Iterator[None]:
    """Autolog patches sklearn process-wide; always switch it off again."""
    import mlflow

    try:
        yield
    finally:
        mlflow.sklearn.autolog(disable=True)
