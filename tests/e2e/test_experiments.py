"""Experiment lifecycle through the real client: create, look up, search, rename, delete, restore, tags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlflow
import pytest
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException


def test_create_get_and_set_experiment(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("created")
    exp_id = mlclient.create_experiment(name, tags={"owner": "alice", "project": "churn"})
    assert isinstance(exp_id, str) and exp_id.isdigit() and exp_id != "0"

    exp = mlclient.get_experiment(exp_id)
    assert exp.experiment_id == exp_id
    assert exp.name == name
    assert exp.lifecycle_stage == "active"
    assert exp.tags == {"owner": "alice", "project": "churn"}
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert exp.creation_time > 0 and exp.last_update_time >= exp.creation_time

    by_name = mlclient.get_experiment_by_name(name)
    assert by_name is not None and by_name.experiment_id == exp_id and by_name.tags == exp.tags
    assert mlflow.get_experiment_by_name(name).experiment_id == exp_id
    assert mlflow.get_experiment(exp_id).name == name

    assert mlclient.get_experiment_by_name(unique_name("missing")) is None
    assert mlflow.get_experiment_by_name(unique_name("missing")) is None

    name = unique_name("set")
    first = mlflow.set_experiment(name)
    assert first.name == name and first.lifecycle_stage == "active"
    second = mlflow.set_experiment(name)
    assert second.experiment_id == first.experiment_id
    by_id = mlflow.set_experiment(experiment_id=first.experiment_id)
    assert by_id.name == name
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == first.experiment_id
    assert [e.name for e in mlclient.search_experiments(filter_string=f"name = '{name}'")] == [name]

    # Workspace-style names with characters that need escaping in a query string.
    odd = "/Users/alice@example.com/churn exp ü #1 & co?+%20" + unique_name("")
    odd_id = mlflow.set_experiment(odd).experiment_id
    assert mlclient.get_experiment_by_name(odd).experiment_id == odd_id
    assert mlclient.get_experiment(odd_id).name == odd
    assert mlflow.set_experiment(odd).experiment_id == odd_id


def test_custom_artifact_location(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str], tmp_path: Any
) -> None:
    location = "mlflow-artifacts:/team-a/custom place"
    exp_id = mlclient.create_experiment(unique_name("located"), artifact_location=location)
    assert mlclient.get_experiment(exp_id).artifact_location == location
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_text("stored under a custom root", "notes/readme.txt")
        # Fluent calls outside the `with` target the active run of this experiment.
        mlflow.log_metric("m", 1.0)
    fetched = mlclient.get_run(run.info.run_id)
    assert fetched.info.experiment_id == exp_id
    assert fetched.info.artifact_uri == f"{location}/{run.info.run_id}/artifacts"
    assert [f.path for f in mlclient.list_artifacts(run.info.run_id, "notes")] == [
        "notes/readme.txt"
    ]
    assert (
        mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/readme.txt")
        == "stored under a custom root"
    )

    # Logging with no active run starts one in the active experiment.
    mlflow.set_experiment(experiment_id=exp_id)
    mlflow.log_metric("auto", 2.0)
    auto = mlflow.active_run()
    assert auto is not None
    mlflow.end_run()
    auto_run = mlclient.get_run(auto.info.run_id)
    assert auto_run.info.experiment_id == exp_id
    assert auto_run.info.status == "FINISHED"
    assert auto_run.data.metrics == {"auto": 2.0}


def test_search_experiments_filter_order_and_paging(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("search")
    names = [f"{prefix}-{c}" for c in "dbeac"]
    ids = {}
    for i, n in enumerate(names):
        ids[n] = mlclient.create_experiment(
            n, tags={"parity": "even" if i % 2 == 0 else "odd", "idx": str(i)}
        )
    ordered = sorted(names)

    def search(**kwargs: Any) -> list[str]:
        return [e.name for e in mlclient.search_experiments(**kwargs)]

    assert search(filter_string=f"name LIKE '{prefix}-%'", order_by=["name ASC"]) == ordered
    assert search(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"]) == ordered[::-1]
    assert search(filter_string=f"name = '{prefix}-e'") == [f"{prefix}-e"]
    assert search(filter_string=f"name ILIKE '{prefix.upper()}-A'") == [f"{prefix}-a"]
    assert search(
        filter_string=f"name LIKE '{prefix}-%' AND tags.parity = 'even'", order_by=["name ASC"]
    ) == sorted(n for i, n in enumerate(names) if i % 2 == 0)
    assert search(filter_string=f"name LIKE '{prefix}-%' AND tag.idx = '3'") == [names[3]]
    # Creation order: created in the order of ``names``.
    by_time = search(
        filter_string=f"name LIKE '{prefix}-%'", order_by=["creation_time ASC", "name ASC"]
    )
    assert set(by_time) == set(names)
    created = [mlclient.get_experiment(ids[n]).creation_time for n in by_time]
    assert created == sorted(created)
    assert (
        search(filter_string=f"name LIKE '{prefix}-%'", order_by=["experiment_id DESC"])
        == names[::-1]
    )
    pick = [ids[names[0]], ids[names[3]]]
    assert search(
        filter_string=f"experiment_id IN ('{pick[0]}', '{pick[1]}')", order_by=["name ASC"]
    ) == sorted([names[0], names[3]])
    assert search(filter_string=f"experiment_id = '{pick[1]}'") == [names[3]]
    assert (
        search(filter_string=f"name LIKE '{prefix}-%' AND creation_time > 0", order_by=["name"])
        == ordered
    )
    assert (
        search(filter_string=f"name LIKE '{prefix}-%' AND tags.idx IS NOT NULL", order_by=["name"])
        == ordered
    )
    assert (
        search(filter_string=f"name LIKE '{prefix}-%' AND tags.missing IS NULL", order_by=["name"])
        == ordered
    )
    assert search(
        filter_string=f"name LIKE '{prefix}-%' AND tags.parity != 'even'", order_by=["name"]
    ) == sorted(n for i, n in enumerate(names) if i % 2 == 1)

    # Paging.
    seen: list[str] = []
    token = None
    sizes = []
    for _ in range(10):
        page = mlclient.search_experiments(
            filter_string=f"name LIKE '{prefix}-%'",
            order_by=["name ASC"],
            max_results=2,
            page_token=token,
        )
        sizes.append(len(page))
        seen.extend(e.name for e in page)
        token = page.token
        if not token:
            break
    assert sizes == [2, 2, 1]
    assert seen == ordered

    # The fluent API returns the same, and the Default experiment is visible without a filter.
    assert [
        e.name
        for e in mlflow.search_experiments(
            filter_string=f"name LIKE '{prefix}-%'", order_by=["name"]
        )
    ] == ordered
    assert "Default" in search()


def test_rename_experiment(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]
) -> None:
    old, new = unique_name("old"), unique_name("new")
    exp_id = mlclient.create_experiment(old)
    mlclient.rename_experiment(exp_id, new)
    assert mlclient.get_experiment(exp_id).name == new
    assert mlclient.get_experiment_by_name(new).experiment_id == exp_id
    assert mlclient.get_experiment_by_name(old) is None
    # The old name is free again.
    assert mlclient.create_experiment(old) != exp_id

    taken = unique_name("taken")
    mlclient.create_experiment(taken)
    with pytest.raises(MlflowException) as excinfo:
        mlclient.rename_experiment(exp_id, taken)
    assert excinfo.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert mlclient.get_experiment(exp_id).name == new


def test_delete_and_restore_experiment(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("doomed")
    exp_id = mlclient.create_experiment(name)
    run = mlclient.create_run(exp_id)
    mlclient.set_terminated(run.info.run_id)

    mlclient.delete_experiment(exp_id)
    deleted = mlclient.get_experiment(exp_id)
    assert deleted.lifecycle_stage == "deleted"
    # get-by-name still finds a deleted experiment (MLflow behaviour).
    found = mlclient.get_experiment_by_name(name)
    assert found is not None and found.lifecycle_stage == "deleted"
    # Its runs are deleted with it.
    assert mlclient.get_run(run.info.run_id).info.lifecycle_stage == "deleted"

    active_names = {e.name for e in mlclient.search_experiments(view_type=ViewType.ACTIVE_ONLY)}
    deleted_names = {e.name for e in mlclient.search_experiments(view_type=ViewType.DELETED_ONLY)}
    all_names = {e.name for e in mlclient.search_experiments(view_type=ViewType.ALL)}
    assert name not in active_names
    assert name in deleted_names
    assert name in all_names and "Default" in all_names

    # set_experiment refuses a deleted experiment, and runs cannot be created in it.
    with pytest.raises(MlflowException, match="deleted"):
        mlflow.set_experiment(name)
    with pytest.raises(MlflowException) as excinfo:
        mlclient.create_run(exp_id)
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    # The name of a deleted experiment is still taken.
    with pytest.raises(MlflowException) as excinfo:
        mlclient.create_experiment(name)
    assert excinfo.value.error_code == "RESOURCE_ALREADY_EXISTS"

    mlclient.restore_experiment(exp_id)
    assert mlclient.get_experiment(exp_id).lifecycle_stage == "active"
    assert mlclient.get_run(run.info.run_id).info.lifecycle_stage == "active"
    assert mlflow.set_experiment(name).experiment_id == exp_id
    assert name in {e.name for e in mlclient.search_experiments()}

    # The Default experiment is reserved.
    with pytest.raises(MlflowException) as excinfo:
        mlclient.delete_experiment("0")
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    assert mlclient.get_experiment("0").lifecycle_stage == "active"


def test_restore_experiment_restores_all_its_runs(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]
) -> None:
    """MLflow's SqlAlchemyStore.delete_experiment marks *every* run of the experiment deleted and
    restore_experiment marks every run active again (``_list_run_infos`` + ``_mark_run_active``),
    including runs that had been deleted on their own before."""
    exp_id = mlclient.create_experiment(unique_name("restore-all"))
    kept = mlclient.create_run(exp_id, run_name="kept").info.run_id
    pre_deleted = mlclient.create_run(exp_id, run_name="pre-deleted").info.run_id
    mlclient.delete_run(pre_deleted)

    mlclient.delete_experiment(exp_id)
    assert mlclient.get_run(kept).info.lifecycle_stage == "deleted"
    assert mlclient.get_run(pre_deleted).info.lifecycle_stage == "deleted"

    mlclient.restore_experiment(exp_id)
    assert mlclient.get_run(kept).info.lifecycle_stage == "active"
    stages = {
        r.info.run_name: r.info.lifecycle_stage
        for r in mlclient.search_runs([exp_id], run_view_type=ViewType.ALL)
    }
    assert stages == {"kept": "active", "pre-deleted": "active"}


def test_experiment_tags_set_and_delete(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]
) -> None:
    exp_id = mlclient.create_experiment(unique_name("tagged"), tags={"a": "1"})
    mlclient.set_experiment_tag(exp_id, "b", "2")
    mlclient.set_experiment_tag(exp_id, "a", "overwritten")
    assert mlclient.get_experiment(exp_id).tags == {"a": "overwritten", "b": "2"}

    mlclient.delete_experiment_tag(exp_id, "a")
    assert mlclient.get_experiment(exp_id).tags == {"b": "2"}

    # Fluent API: tags go on the active experiment.
    mlflow.set_experiment(experiment_id=exp_id)
    mlflow.set_experiment_tags({"c": "3", "note": "long " * 100})
    mlflow.set_experiment_tag("d", "4")
    tags = mlflow.get_experiment(exp_id).tags
    assert tags == {"b": "2", "c": "3", "d": "4", "note": "long " * 100}
    assert [e.experiment_id for e in mlclient.search_experiments(filter_string="tags.d = '4'")] == [
        exp_id
    ]
