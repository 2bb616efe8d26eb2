"""The optimize step's pure parts: parameters refused before any run, and the best
trial as best_params.json and back as the family's own parameters for the refit."""

import dataclasses
import json

import optuna
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.models.families import nn, rf
from mlcycle.models.network import NetworkParams
from mlcycle.steps.optimize import OptimizeParams, best_params, refit_params, study_name

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"family": "xgboost"}, "parameter family must be one of rf, nn, hgb, got 'xgboost'"),
        ({"n_trials": -1}, "parameter n_trials must be >= 0, got -1"),
        ({"metric": "accuracy_score"}, "parameter metric must be one of"),
        ({"storage": "redis://127.0.0.1:6379"}, "parameter storage: unsupported scheme 'redis'"),
        ({"storage": "sqlite:/x.db"}, "parameter storage: 'sqlite:/x.db' is not a valid sqlite"),
    ],
)
def test_bad_parameters_are_one_line_before_any_run(changes, message):
    with pytest.raises(MlcycleError) as caught:
        dataclasses.replace(OptimizeParams(), **changes).validate()
    assert str(caught.value).startswith(message)


def test_the_study_name_defaults_to_model_family_and_metric():
    assert study_name(OptimizeParams(family="nn"), "f1") == "loan-amount-nn-f1"
    assert study_name(OptimizeParams(study_name="mine"), "f1") == "mine"


def _best_trial(family, task):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: float(family.suggest(t, task, 3).seed), n_trials=3)
    return study.best_trial


def test_the_best_forest_is_refitted_as_tuned_on_every_core():
    trial = _best_trial(rf, "classification")
    written = json.loads(json.dumps(best_params("rf", trial, "classification", seed=3)))
    assert written["family"] == "rf"
    params = refit_params(written)
    tuned = rf.suggest(optuna.trial.FixedTrial(trial.params), "classification", 3)
    assert params == dataclasses.replace(tuned, n_jobs=-1)


def test_the_best_network_is_refitted_as_tuned():
    trial = _best_trial(nn, "regression")
    written = json.loads(json.dumps(best_params("nn", trial, "regression", seed=3)))
    assert written["family"] == "nn" and isinstance(written["hidden_units"], list)
    params = refit_params(written)
    assert isinstance(params, NetworkParams)
    assert params == nn.suggest(optuna.trial.FixedTrial(trial.params), "regression", 3)
    layers = range(trial.params["n_layers"])
    assert params.hidden_units == tuple(trial.params[f"units_{i}"] for i in layers)


def _splits(current_rows: int):
    import pandas as pd

    from mlcycle.ingest.split import Splits

    frame = pd.DataFrame({"x": range(current_rows), "y": range(current_rows)})
    empty = frame.head(0)
    return Splits(empty, empty, frame, empty)


def test_the_trials_never_see_the_slice_main_judges_the_best_on():
    from mlcycle.models import selection
    from mlcycle.steps.optimize import tuning_rows

    splits = _splits(400)
    tuned = set(tuning_rows(splits, seed=5)["x"])
    _, judge = selection.judging_slice(splits.current_train, seed=5)
    judged = set(judge["x"])
    assert judged and not tuned & judged
    assert tuned | judged == set(range(400))


def test_with_no_slice_to_spare_the_trials_see_every_current_train_row():
    from mlcycle.steps.optimize import tuning_rows

    assert list(tuning_rows(_splits(1), seed=5)["x"]) == [0]
