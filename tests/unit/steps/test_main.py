"""main's own parameters: which families it refits as candidates."""

import dataclasses

import pytest

from mlcycle.errors import MlcycleError
from mlcycle.steps.main import MainParams


def test_the_tuned_family_is_not_refitted_and_duplicates_count_once():
    assert MainParams().refits() == ["rf", "hgb"]  # the network is tuned
    assert MainParams(optimize_family="hgb").refits() == ["rf"]
    assert MainParams(optimize_family="hgb", n_trials=0).refits() == ["rf", "hgb"]
    assert MainParams(refit_families=" hgb, hgb ,").refits() == ["hgb"]
    assert MainParams(refit_families="").refits() == []


def test_an_unknown_family_to_refit_is_one_line_naming_the_parameter():
    params = dataclasses.replace(MainParams(), refit_families="rf,xgb")
    with pytest.raises(MlcycleError, match="^parameter refit_families must name families of"):
        params.validate()


def _version(client, name: str, step: str, etl_run: str, parent_step: str | None) -> str:
    """A registered version of a run tagged as `step`, under a parent run of `parent_step`."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from mlcycle import config

    experiment = client.get_experiment_by_name("Default").experiment_id
    tags = {config.STEP_TAG: step}
    if parent_step:
        parent = client.create_run(experiment, tags={config.STEP_TAG: parent_step})
        tags[MLFLOW_PARENT_RUN_ID] = parent.info.run_id
    run = client.create_run(experiment, tags=tags)
    found = client.create_model_version(
        name, f"runs:/{run.info.run_id}/model", run.info.run_id, tags={"mlcycle.etl_run": etl_run}
    )
    return str(found.version)


def test_only_a_forest_mains_baseline_registered_on_these_rows_is_its_own(tracking_uri):
    """The champion monitor judges as one more candidate of this round (incumbent=false):
    the forest a baseline child of a main run registered on this etl run; any other
    champion served before, or was chosen by someone, and is defended as an incumbent."""
    import mlflow

    from mlcycle.steps.main import own_forest

    client = mlflow.MlflowClient()
    client.create_registered_model("m")
    mains = _version(client, "m", "baseline", "etl-1", parent_step="main")
    by_hand = _version(client, "m", "baseline", "etl-1", parent_step=None)
    retrained = _version(client, "m", "retrain", "etl-1", parent_step="main")
    assert own_forest("m", mains, "etl-1")
    assert not own_forest("m", mains, "etl-2")  # trained on the rows of an earlier round
    assert not own_forest("m", by_hand, "etl-1")
    assert not own_forest("m", retrained, "etl-1")
