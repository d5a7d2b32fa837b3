"""The registry store against a real PostgreSQL: gap-free numbering under concurrent writers,
atomic audit events, history across renames and name reuse, registry search semantics."""

from __future__ import annotations

import asyncio

import pytest

from metricgate.domain.errors import AlreadyExists, InvalidParameter, NotFound
from metricgate.domain.registry.entities import Audit
from metricgate.domain.tracking.entities import Tag
from metricgate.registry.service import RegistryService
from metricgate.stores.postgres.pool import Database
from metricgate.stores.postgres.registry import PgRegistryStore

ALICE = Audit(actor="alice", comment="because")


@pytest.fixture
def registry(db: Database) -> RegistryService:
    return RegistryService(PgRegistryStore(db))


async def _types(registry: RegistryService, name: str, version: str | None = None) -> list[str]:
    events, _ = await registry.history(name, version, 1000, None)
    return [e.event_type for e in events]


async def test_concurrent_writers_get_consecutive_versions(registry: RegistryService) -> None:
    await registry.create_registered_model(ALICE, "m", [], None)

    async def register(i: int) -> int:
        return (
            await registry.create_model_version(
                ALICE, "m", f"s3://b/{i}", None, [], None, None, None
            )
        ).version

    # Interleave failing registrations (unknown run): they must not burn numbers.
    async def failing() -> None:
        with pytest.raises(NotFound):
            await registry.create_model_version(
                ALICE, "m", "runs:/" + "0" * 32 + "/model", None, [], None, None, None
            )

    results = await asyncio.gather(
        *[register(i) for i in range(20)], *[failing() for _ in range(5)]
    )
    assert sorted(r for r in results if r is not None) == list(range(1, 21))
    assert (await _types(registry, "m")).count("model_version.created") == 20


async def test_concurrent_creates_and_renames_to_one_name(registry: RegistryService) -> None:
    outcomes = await asyncio.gather(
        *[registry.create_registered_model(ALICE, "same", [], None) for _ in range(5)],
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, AlreadyExists) for o in outcomes if isinstance(o, BaseException))
    await registry.create_registered_model(ALICE, "a", [], None)
    await registry.create_registered_model(ALICE, "b", [], None)
    renames = await asyncio.gather(
        registry.rename_registered_model(ALICE, "a", "target"),
        registry.rename_registered_model(ALICE, "b", "target"),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in renames) == ["AlreadyExists", "RegisteredModel"]
    assert (await _types(registry, "same")) == ["registered_model.created"]


async def test_history_follows_renames_and_keeps_a_reused_names_past(
    registry: RegistryService,
) -> None:
    # An earlier model called "x" is deleted; a new "x" is renamed to "y" and back to "x".
    await registry.create_registered_model(ALICE, "x", [], "old model")
    await registry.delete_registered_model(ALICE, "x")
    await registry.create_registered_model(ALICE, "x", [], "new model")
    await registry.create_model_version(ALICE, "x", "s3://b/1", None, [], None, None, None)
    await registry.rename_registered_model(ALICE, "x", "y")
    await registry.set_alias(ALICE, "y", "prod", "1")
    await registry.rename_registered_model(ALICE, "y", "x")
    current_model = [
        "registered_model.renamed",
        "alias.set",
        "registered_model.renamed",
        "model_version.created",
        "registered_model.created",
    ]
    # The deleted predecessor stays auditable under its name, after the current model's events.
    assert await _types(registry, "x") == [
        *current_model,
        "registered_model.deleted",
        "registered_model.created",
    ]
    # "y" was the name between the two renames: its model's events, ending with the rename away.
    assert await _types(registry, "y") == current_model
    events, _ = await registry.history("x", None, 10, None)
    assert [e.model_name for e in events] == ["x", "y", "y", "x", "x", "x", "x"]
    assert {e.actor for e in events} == {"alice"} and {e.comment for e in events} == {"because"}
    # Paging through the union of names returns every event once.
    seen, token = [], None
    while True:
        page, token = await registry.history("x", None, 2, token)
        seen.extend(e.id for e in page)
        if token is None:
            break
    assert seen == [e.id for e in events]
    # A name that was renamed away and never reused: its events and the rename.
    await registry.create_registered_model(ALICE, "p", [], None)
    await registry.rename_registered_model(ALICE, "p", "q")
    assert await _types(registry, "p") == ["registered_model.renamed", "registered_model.created"]


async def test_registry_search_tag_semantics(registry: RegistryService) -> None:
    await registry.create_registered_model(ALICE, "plain", [], None)
    await registry.create_registered_model(
        ALICE, "prompt", [Tag("mlflow.prompt.is_prompt", "true")], None
    )
    await registry.create_registered_model(
        ALICE, "other", [Tag("mlflow.prompt.is_prompt", "false")], None
    )

    async def names(filter_string: str) -> list[str]:
        page = await registry.search_registered_models(filter_string, [], 100, None)
        return [m.name for m in page.items]

    # Stock's prompt rule (tests/integration/test_registry_search_grouping.py): prompts are hidden
    # unless asked for, and the client's "!= 'true'" also returns models without the tag.
    assert await names("tags.`mlflow.prompt.is_prompt` != 'true'") == ["other", "plain"]
    assert await names("tags.`mlflow.prompt.is_prompt` = 'true'") == ["prompt"]
    assert await names("tags.`mlflow.prompt.is_prompt` IS NULL") == ["plain"]
    assert await names("name ILIKE 'P%'") == ["plain"]
    with pytest.raises(InvalidParameter):
        await names("run_id = 'x'")


async def test_stage_and_alias_rules(registry: RegistryService) -> None:
    await registry.create_registered_model(ALICE, "m", [], None)
    for i in range(3):
        await registry.create_model_version(ALICE, "m", f"s3://b/{i}", None, [], None, None, None)
    moved = await registry.transition_stage(ALICE, "m", "1", "STAGING", False)
    assert moved.current_stage == "Staging"
    await registry.transition_stage(ALICE, "m", "2", "staging", True)
    assert [v.current_stage for v in await registry.get_latest_versions("m", [])] == [
        "None",
        "Staging",
        "Archived",
    ]
    for bad_alias in ("latest", "V12", "with space", "x" * 256):
        with pytest.raises(InvalidParameter):
            await registry.set_alias(ALICE, "m", bad_alias, "1")
    with pytest.raises(InvalidParameter):
        await registry.transition_stage(ALICE, "m", "1", "None", True)
    with pytest.raises(InvalidParameter):
        await registry.get_model_version("m", "0")
    with pytest.raises(InvalidParameter):
        await registry.create_registered_model(ALICE, "a/b", [], None)
    # Deleting an alias that does not exist is a no-op and records nothing (as MLflow).
    before = await _types(registry, "m")
    await registry.delete_alias(ALICE, "m", "ghost")
    assert await _types(registry, "m") == before
