"""PgLoggedModelStore.experiment_of, the access check's lookup of a logged model's experiment:
one primary-key read, deleted models included, NotFound for an unknown id."""

from __future__ import annotations

import pytest

from metricgate.domain.errors import NotFound
from metricgate.stores.postgres.experiments import PgExperimentStore
from metricgate.stores.postgres.logged_models import PgLoggedModelStore
from metricgate.stores.postgres.pool import Database


async def test_experiment_of_a_logged_model(db: Database) -> None:
    experiment_id = await PgExperimentStore(db, "mlflow-artifacts:").create("lookup", None, [])
    models = PgLoggedModelStore(db)
    model = await models.create(int(experiment_id), "m", None, None, [], [])
    assert await models.experiment_of(model.model_id) == str(experiment_id)
    await models.delete(model.model_id)
    # A deleted model keeps its experiment: access to it is still that experiment's.
    assert await models.experiment_of(model.model_id) == str(experiment_id)
    with pytest.raises(NotFound, match="m-0123"):
        await models.experiment_of("m-0123")
