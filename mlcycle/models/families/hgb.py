"""The boosted-trees family: preprocessing and scikit-learn's HistGradientBoosting in one
Pipeline, served as the forest is (`mlcycle.models.served_forest`: raw rows, a 400 naming
the column, a signature, the trees compiled by Treelite when its answers are the
Pipeline's).

Its parameters, fit, log, and what Optuna searches: one validation slice of the training
rows (the slice retrain and main judge candidates on), nothing to prune (the boosting
stops early by itself, on a slice of the rows it fits)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import optuna
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models.families import known_fields
from mlcycle.models.features import tree_pipeline
from mlcycle.models.served_forest import log_forest
from mlcycle.models.tuning import validation_score

NAME = "hgb"


@dataclass(frozen=True)
class BoostingParams:
    """scikit-learn's defaults, except max_iter and early stopping: boosting rounds stop
    once n_iter_no_change rounds in a row did not improve the loss on validation_fraction
    of the fitted rows (scikit-learn turns that on only from 10,000 rows; on the bank's
    few thousand rows a fixed 100 rounds either stops short or overfits)."""

    learning_rate: float = 0.1
    max_iter: int = 500
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 0.0
    max_features: float = 1.0
    class_weight: str | None = None
    early_stopping: bool = True
    validation_fraction: float = 0.1
    n_iter_no_change: int = 10
    seed: int = 42

    def validate(self) -> BoostingParams:
        checks = [
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("max_iter", self.max_iter >= 1, ">= 1"),
            ("max_leaf_nodes", self.max_leaf_nodes >= 2, ">= 2"),
            ("min_samples_leaf", self.min_samples_leaf >= 1, ">= 1"),
            ("l2_regularization", self.l2_regularization >= 0, ">= 0"),
            ("max_features", 0 < self.max_features <= 1, "in (0, 1]"),
            ("class_weight", self.class_weight in (None, "balanced"), "empty or balanced"),
            ("validation_fraction", 0 < self.validation_fraction < 1, "in (0, 1)"),
            ("n_iter_no_change", self.n_iter_no_change >= 1, ">= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise MlcycleError(
                    f"parameter {name} must be {expected}, got {getattr(self, name)!r}"
                )
        return self


# BoostingParams from a best_params.json dict (keys that are not fields are ignored).
params_from = partial(known_fields, BoostingParams)


# BoostingParams' fields that are HistGradientBoosting's own settings.
ESTIMATOR_FIELDS = (
    "learning_rate",
    "max_iter",
    "max_leaf_nodes",
    "min_samples_leaf",
    "l2_regularization",
    "max_features",
    "early_stopping",
    "validation_fraction",
    "n_iter_no_change",
)


def build_boosting(schema: Schema, params: BoostingParams) -> Pipeline:
    # The forest's preprocessing: the served model reads raw rows the same way, and
    # Treelite compiles the trees behind it alike.
    kinds = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    return tree_pipeline(schema, kinds, params, ESTIMATOR_FIELDS)


def fit(schema: Schema, params: BoostingParams, train: pd.DataFrame) -> Pipeline:
    """Fit preprocessing and boosted trees on the training rows only."""
    if len(train) < 2 and params.early_stopping:
        raise MlcycleError(f"{len(train)} training row(s) are too few for early stopping")
    pipeline = build_boosting(schema, params.validate())
    # One OpenMP thread: the boosting's threads spin at every round's barrier, and on a
    # machine whose cores are busy (other steps, other trials) that costs 20-60x
    # (measured here at load 5 on 2 cores: 292 rounds on 1,583 rows in 0.3-0.4 s on one
    # thread, 7-24 s on the default two).
    with threadpool_limits(1, user_api="openmp"):
        pipeline.fit(train[schema.features], train[schema.target])
    return pipeline


def log(
    model: Pipeline,
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    *,
    version_tags: dict[str, str] | None = None,
):
    """Log (and register, when model_name is given) as the served forest is logged, the
    MLmodel naming this family."""
    return log_forest(model, schema, train, model_name, version_tags=version_tags, family=NAME)


# --- search --------------------------------------------------------------------------


def suggest(trial: optuna.trial.BaseTrial, task: str, seed: int) -> BoostingParams:
    """Step size, tree size, leaf size, ridge penalty and feature sampling; the number of
    rounds is early stopping's to decide."""
    return BoostingParams(
        learning_rate=trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        max_leaf_nodes=trial.suggest_int("max_leaf_nodes", 7, 127, log=True),
        min_samples_leaf=trial.suggest_int("min_samples_leaf", 2, 100, log=True),
        l2_regularization=trial.suggest_float("l2_regularization", 0.0, 1.0),
        max_features=trial.suggest_float("max_features", 0.3, 1.0),
        class_weight=(
            trial.suggest_categorical("class_weight", [None, "balanced"])
            if task == "classification"
            else None
        ),
        seed=seed,
    )


def default_trial(task: str) -> dict:
    """The search-space values of the family's defaults (optimize's first trial)."""
    d = BoostingParams()
    values = {
        "learning_rate": d.learning_rate,
        "max_leaf_nodes": d.max_leaf_nodes,
        "min_samples_leaf": d.min_samples_leaf,
        "l2_regularization": d.l2_regularization,
        "max_features": d.max_features,
    }
    return values | ({"class_weight": d.class_weight} if task == "classification" else {})


def best_params(trial: optuna.trial.FrozenTrial, task: str, seed: int) -> dict:
    """The trial's boosted trees as JSON-ready values."""
    return asdict(suggest(optuna.trial.FixedTrial(trial.params), task, seed))


class BoostingObjective:
    """Validation score of boosted trees fitted on the rest of the training rows; the
    slice is the one retrain and main judge on (`mlcycle.models.candidates`)."""

    def __init__(self, schema: Schema, train: pd.DataFrame, metric: str, seed: int):
        from mlcycle.models.selection import judging_slice

        self.schema, self.metric, self.seed = schema, metric, seed
        self.fit_rows, self.valid_rows = judging_slice(train, seed)
        if self.valid_rows.empty:
            raise MlcycleError(f"{len(train)} training row(s) leave no validation slice")
        self.curves: dict[int, dict[str, list[float]]] = {}

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest(trial, self.schema.task, self.seed)
        model = fit(self.schema, params, self.fit_rows)
        trial.set_user_attr("rounds", int(model.named_steps["model"].n_iter_))
        return validation_score(model, self.schema, self.valid_rows, self.metric)


def objective(
    schema: Schema, train: pd.DataFrame, metric: str, direction: str, seed: int
) -> BoostingObjective:
    return BoostingObjective(schema, train, metric, seed)


def pruner() -> optuna.pruners.BasePruner:
    """Early stopping ends each fit; a trial reports nothing to prune on."""
    return optuna.pruners.NopPruner()
