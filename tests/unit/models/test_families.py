"""Model families: the registry, and each family's parameters, search space and objective."""

import json

import numpy as np
import optuna
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models import families
from mlcycle.models.families import nn, rf
from mlcycle.models.network import NetworkParams

optuna.logging.set_verbosity(optuna.logging.WARNING)

# What the steps ask of a family: the methods the Family protocol declares.
INTERFACE = [name for name in vars(families.Family) if not name.startswith("_")]


# --- registry -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", families.FAMILY_NAMES)
def test_every_named_family_provides_the_whole_interface(name):
    family = families.get(name)
    assert (family.NAME, len(INTERFACE)) == (name, 8)
    missing = [f for f in INTERFACE if not callable(getattr(family, f, None))]
    assert missing == []


def test_an_unknown_family_is_one_line_naming_the_parameter():
    assert families.check("nn") == "nn"
    with pytest.raises(
        MlcycleError, match="^parameter family must be one of rf, nn, hgb, got 'xgb'$"
    ):
        families.get("xgb")


def test_params_from_reads_best_params_and_ignores_the_family_key():
    assert rf.params_from({"family": "rf", "n_estimators": 7}) == rf.ForestParams(n_estimators=7)
    assert nn.params_from({"family": "nn", "hidden_units": [4], "epochs": "3"}) == NetworkParams(
        hidden_units=(4,), epochs=3
    )


# --- search spaces ----------------------------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_forest_space_gives_valid_params_with_one_job(task):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = rf.suggest(trial, task, seed=7).validate()
        study.tell(trial, 0.0)
        assert params.n_jobs == 1 and params.seed == 7
        assert 50 <= params.n_estimators <= 400 and 3 <= params.max_depth <= 30
        assert 0.2 <= params.max_features <= 1.0
        if task == "regression":
            assert params.class_weight is None and "class_weight" not in trial.params
    assert {t.params.get("class_weight") for t in study.trials} >= (
        {None, "balanced"} if task == "classification" else {None}
    )


def test_best_params_of_the_forest_round_trip_through_json():
    study = optuna.create_study()
    study.optimize(lambda t: rf.suggest(t, "classification", 1).n_estimators, n_trials=3)
    best = json.loads(json.dumps(rf.best_params(study.best_trial, "classification", seed=1)))
    params = rf.ForestParams(**best).validate()
    assert params.n_estimators == study.best_trial.params["n_estimators"]
    assert params.n_jobs == -1 and set(best) == set(rf.ForestParams.__dataclass_fields__)


def test_network_space_gives_valid_params_and_best_params_for_retrain():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = nn.suggest(trial, "regression", seed=5).validate()
        study.tell(trial, float(sum(params.hidden_units)))
        assert 1 <= len(params.hidden_units) <= 3 and params.seed == 5
        assert params.epochs <= nn.MAX_EPOCHS and params.batch_size in (16, 32, 64, 128)
    best = json.loads(json.dumps(nn.best_params(study.best_trial, "regression", 5)))
    assert set(best) == set(NetworkParams.__dataclass_fields__)
    assert NetworkParams.from_dict(best).hidden_units == tuple(best["hidden_units"])
    assert sum(best["hidden_units"]) == study.best_value


# --- objectives and pruners ---------------------------------------------------------------


def _frame(rows=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    kind = rng.choice(["a", "b"], rows)
    y = 3 * x + (kind == "a") + rng.normal(scale=0.1, size=rows)
    return pd.DataFrame({"x": x, "kind": kind, "y": y})


SCHEMA = Schema(target="y", task="regression", numeric=["x"], categorical=["kind"])


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_forest_objective_cross_validates_on_the_rows_it_is_given():
    objective = rf.objective(SCHEMA, _frame(), "r2", "maximize", seed=0)
    assert sum(len(valid) for _, valid in objective.folds) == 120
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=2)
    assert 0.5 < study.best_value <= 1.0


def test_network_objective_reports_losses_in_the_study_direction():
    assert nn.objective(SCHEMA, _frame(), "r2", "maximize", 0).sign == -1.0
    assert nn.objective(SCHEMA, _frame(), "mae", "minimize", 0).sign == 1.0


def test_only_the_network_prunes():
    assert isinstance(rf.pruner(), optuna.pruners.NopPruner)
    assert isinstance(nn.pruner(), optuna.pruners.SuccessiveHalvingPruner)


# --- the first trial: the defaults ----------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_each_familys_first_trial_is_its_defaults_inside_its_space(task):
    forest = rf.suggest(optuna.trial.FixedTrial(rf.default_trial(task)), task, seed=42)
    # The space has no unlimited depth: its deepest stands for the default's None.
    assert forest == rf.ForestParams(max_depth=30, n_jobs=1)
    network = nn.suggest(optuna.trial.FixedTrial(nn.default_trial(task)), task, seed=42)
    assert network == NetworkParams()  # what retrain trains when nothing is tuned
    for name in families.FAMILY_NAMES:
        family = families.get(name)
        values = family.default_trial(task)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.enqueue_trial(values)
        trial = study.ask()
        family.suggest(trial, task, 0)
        assert trial.params == values, name
        # Inside the space: a sampler never has to fall back on its own values.
        for key, distribution in trial.distributions.items():
            assert distribution._contains(distribution.to_internal_repr(values[key])), key


def test_the_network_retrain_kept_is_read_back_from_its_logged_params_when_inside_the_space():
    logged = {"hidden_units": "[32]", "dropout": "0.1", "learning_rate": "0.002"}
    logged |= {"batch_size": "64", "epochs": "40", "patience": "10", "seed": "42"}
    values = nn.known_trial(logged)
    assert values == {
        "n_layers": 1,
        "units_0": 32,
        "dropout": 0.1,
        "learning_rate": 0.002,
        "batch_size": 64,
        "epochs": 40,
    }
    trial = optuna.trial.FixedTrial(values)
    assert nn.suggest(trial, "regression", 42).hidden_units == (32,)
    # A 2-epoch network (a test's), or a batch size the space does not hold: not a trial.
    assert nn.known_trial(logged | {"epochs": "2"}) is None
    assert nn.known_trial(logged | {"batch_size": "48"}) is None
