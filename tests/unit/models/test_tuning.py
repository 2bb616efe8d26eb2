"""Tuning: the metric a study optimises, study resuming, and trial logging."""

import mlflow
import optuna
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.models import tuning
from mlcycle.scaleout import optuna_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- parameters -------------------------------------------------------------------------


def test_metric_defaults_to_the_primary_one_with_its_direction():
    assert tuning.resolve_metric("", "regression") == ("r2", "maximize")
    assert tuning.resolve_metric("", "classification") == ("f1", "maximize")
    assert tuning.resolve_metric("rmse", "regression") == ("rmse", "minimize")
    assert tuning.resolve_metric("roc_auc", "classification") == ("roc_auc", "maximize")


@pytest.mark.parametrize(
    ("metric", "task", "message"),
    [
        ("auc", "regression", "parameter metric must be one of"),
        ("current_test_r2", "regression", "parameter metric must be one of"),
        ("r2", "classification", "does not apply to a classification task"),
        ("f1", "regression", "does not apply to a regression task"),
    ],
)
def test_bad_metric_is_refused(metric, task, message):
    with pytest.raises(MlcycleError, match=message):
        tuning.resolve_metric(metric, task)


def test_default_study_name_is_stable():
    assert tuning.default_study_name("loan-amount", "rf", "r2") == "loan-amount-rf-r2"


# --- studies ----------------------------------------------------------------------------


def _journal(tmp_path):
    return optuna_storage.open_storage(optuna_storage.parse_storage(str(tmp_path / "j.log")))


ATTRS = {"family": "rf", "metric": "r2", "task": "regression"}


def test_resuming_a_study_adds_to_it_and_samples_new_points(tmp_path):
    storage = _journal(tmp_path)
    study, created = tuning.open_study(storage, "s", "maximize", ATTRS, seed=3)
    assert created
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again, created = tuning.open_study(_journal(tmp_path), "s", "maximize", ATTRS, seed=3)
    assert not created
    again.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    xs = [t.params["x"] for t in again.trials]
    assert len(xs) == 5 and len(set(xs)) == 5  # the same seed again would repeat points
    assert again.user_attrs == ATTRS


def test_a_study_of_another_metric_or_direction_is_not_resumed(tmp_path):
    storage = _journal(tmp_path)
    tuning.open_study(storage, "s", "maximize", ATTRS, seed=0)
    with pytest.raises(MlcycleError, match="study 's' exists and is to maximize"):
        tuning.open_study(storage, "s", "minimize", {**ATTRS, "metric": "mae"}, seed=0)
    with pytest.raises(MlcycleError, match="study 's' exists with family='rf', not 'nn'"):
        tuning.open_study(storage, "s", "maximize", {**ATTRS, "family": "nn"}, seed=0)


def test_no_completed_trial_is_a_clear_error(tmp_path):
    study = optuna.create_study(study_name="empty")
    with pytest.raises(MlcycleError, match="study 'empty' has no completed trial"):
        tuning.best_trial(study)


# --- trial logging ------------------------------------------------------------------


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_each_trial_is_a_nested_run_with_its_state_even_in_threads(tracking_uri):
    """A failing trial is recorded as failed and the search goes on; n_jobs=2 threads."""

    def objective(trial):
        x = trial.suggest_int("x", 0, 100)
        if trial.number == 1:
            raise RuntimeError("boom")
        if trial.number == 2:
            trial.report(1.0, 1)
            raise optuna.TrialPruned()
        return float(x)

    with mlflow.start_run() as parent:
        logger = tuning.TrialLogger(
            objective, parent.info.run_id, parent.info.experiment_id, "r2", "s"
        )
        study = optuna.create_study(direction="maximize")
        tuning.run_search(study, logger, n_trials=6, timeout=None, n_jobs=2, progress=False)
    assert logger.counts() == {"trials_complete": 4.0, "trials_pruned": 1.0, "trials_failed": 1.0}
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        output_format="list",
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    assert len(children) == 6
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert sorted(by_number) == list(range(6))
    assert by_number[1].data.tags["trial_state"] == "failed"
    assert "boom" in by_number[1].data.tags["trial_error"]
    assert by_number[1].info.status == "FAILED"
    assert by_number[2].data.tags["trial_state"] == "pruned"
    assert by_number[0].data.metrics["validation_r2"] == study.trials[0].value
    assert by_number[0].data.params["x"] == str(study.trials[0].params["x"])
    assert study.trials[0].user_attrs["mlflow_run_id"] == by_number[0].info.run_id
