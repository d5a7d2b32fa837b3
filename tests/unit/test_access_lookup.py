"""The access check's lookups of what governs a logged model: the model's experiment through the
store's one-column ``experiment_of`` (never the whole model, with its params, tags and metrics),
remembered per process, and a missing model as such."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from aiohttp import web

from metricgate.api.access import AccessState, _Check, _Missing
from metricgate.auth.authenticator import CallerAccess
from metricgate.config import AuthSettings
from metricgate.domain.auth.entities import Credential
from metricgate.domain.auth.permissions import ResourceType
from metricgate.domain.errors import NotFound


class LoggedModels:
    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def experiment_of(self, model_id: str) -> str:
        self.lookups.append(model_id)
        if model_id != "m-1":
            raise NotFound(f"Logged model with ID '{model_id}' not found.")
        return "7"

    async def get(self, model_id: str, allow_deleted: bool = False) -> Any:
        raise AssertionError("the access check read the whole logged model")


class Service:
    def __init__(self) -> None:
        self.logged_models = LoggedModels()


def _check(service: Service, state: AccessState) -> _Check:
    access = cast(
        CallerAccess, SimpleNamespace(credential=Credential(1, "alice", False, 1, "basic"))
    )
    return _Check(cast(web.Request, None), cast(Any, service), access, state)


async def test_a_logged_models_experiment_is_one_lookup_remembered() -> None:
    service, state = Service(), AccessState(AuthSettings(mode="on"))
    check = _check(service, state)
    assert await check.model_experiment("m-1") == (ResourceType.EXPERIMENT, "7")
    assert await _check(service, state).model_experiment("m-1") == (ResourceType.EXPERIMENT, "7")
    assert service.logged_models.lookups == ["m-1"]
    assert await check.model_experiment("m-2") == _Missing(ResourceType.EXPERIMENT)
