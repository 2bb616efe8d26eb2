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


def test_the_winners_lead_is_read_from_the_candidates_logged_slice_predictions(tracking_uri):
    import mlflow
    import numpy as np
    import pandas as pd

    from mlcycle.models import blending
    from mlcycle.models.selection import Entry
    from mlcycle.steps.nomination import lead, nominate_best

    rng = np.random.default_rng(3)
    truth = rng.normal(size=120)
    entries = []
    for label, noise in (("optimize-nn", 0.6), ("refit-rf", 0.3), ("refit-hgb", 0.0)):
        answers = truth + rng.normal(scale=0.9, size=120) * noise
        with mlflow.start_run() as run:
            if noise:  # refit-hgb logged none
                blending.log_slice_predictions(
                    pd.DataFrame({blending.TRUTH: truth, blending.PREDICTION: answers})
                )
        score = 1 - np.mean((answers - truth) ** 2) / np.var(truth)
        entries.append(Entry(label, "1", float(score), run.info.run_id))
    entries[2] = Entry("refit-hgb", "1", -1.0, entries[2].run_id)  # the lowest score
    runner, interval = lead(entries, entries[1], "regression", seed=0)
    assert runner.label == "optimize-nn"
    assert interval.delta == pytest.approx(entries[1].score - entries[0].score)
    assert interval.rows == 120 and interval.low <= interval.delta <= interval.high
    # A winner whose run logged no slice predictions: no lead, nothing guessed.
    best_without = Entry("refit-hgb", "1", 0.99, entries[2].run_id)
    assert lead([*entries[:2], best_without], best_without, "regression", seed=0) is None

    # An artifact that cannot be compared (no prediction column): a warning, no lead.
    with mlflow.start_run() as odd:
        blending.log_slice_predictions(pd.DataFrame({blending.TRUTH: truth}))
    odd_winner = Entry("retrain", "1", 0.99, odd.info.run_id)
    assert lead([*entries[:2], odd_winner], odd_winner, "regression", seed=0) is None

    # main's nomination carries it: metrics, and a clause of the reason.
    client = mlflow.MlflowClient()
    client.create_registered_model("m")
    entries = [
        dataclasses.replace(e, version=_version(client, "m", "optimize", "etl-1", "main"))
        for e in entries
    ]
    with mlflow.start_run() as main_run:
        assert nominate_best(main_run, "m", entries, "regression", seed=0) == entries[1].version
    logged = mlflow.get_run(main_run.info.run_id).data
    assert logged.metrics["validation_lead"] == pytest.approx(interval.delta)
    assert logged.metrics["validation_lead_ci_low"] == pytest.approx(interval.low)
    assert logged.tags["mlcycle.candidate_winner"] == "refit-rf"
    assert logged.tags["mlcycle.candidate_reason"].endswith(
        f"; its lead over optimize-nn on the 120 slice rows: {interval.delta:+.4f} "
        f"({interval.text()}), {'within' if interval.low <= 0 else 'beyond'} the slice's noise"
    )
