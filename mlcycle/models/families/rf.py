"""The forest family: preprocessing and a RandomForest in one scikit-learn Pipeline.

Its parameters, fit, log, and what Optuna searches (k-fold cross-validation on the
training rows; nothing to prune: a forest reports no intermediate values).

scikit-learn, Optuna and MLflow are imported by the functions that use them: baseline
checks its parameters with ForestParams before its run opens, and that check is light."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING

from mlcycle.errors import MlcycleError
from mlcycle.models.families import known_fields

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from mlcycle.ingest.data import Schema

NAME = "rf"
# Forest validation in a search: k-fold on the training rows.
CV_FOLDS = 3


@dataclass(frozen=True)
class ForestParams:
    n_estimators: int = 100
    max_depth: int | None = None
    min_samples_split: int = 2
    min_samples_leaf: int = 1
    max_features: float | str | None = 1.0
    class_weight: str | None = None
    seed: int = 42
    n_jobs: int = -1

    def validate(self) -> ForestParams:
        if self.n_estimators < 1:
            raise MlcycleError(f"parameter n_estimators must be >= 1, got {self.n_estimators}")
        if self.max_depth is not None and self.max_depth < 1:
            raise MlcycleError(f"parameter max_depth must be >= 1 or empty, got {self.max_depth}")
        if self.min_samples_split < 2:
            raise MlcycleError(
                f"parameter min_samples_split must be >= 2, got {self.min_samples_split}"
            )
        if self.min_samples_leaf < 1:
            raise MlcycleError(
                f"parameter min_samples_leaf must be >= 1, got {self.min_samples_leaf}"
            )
        if self.class_weight not in (None, "balanced", "balanced_subsample"):
            raise MlcycleError(
                "parameter class_weight must be empty, balanced or "
                f"balanced_subsample, got {self.class_weight!r}"
            )
        return self


# ForestParams from a best_params.json dict (keys that are not fields are ignored).
params_from = partial(known_fields, ForestParams)


# ForestParams' fields that are the forest's own settings.
ESTIMATOR_FIELDS = (
    "n_estimators",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "max_features",
    "n_jobs",
)


def build_forest(schema: Schema, params: ForestParams) -> Pipeline:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from mlcycle.models.features import tree_pipeline

    kinds = (RandomForestClassifier, RandomForestRegressor)
    return tree_pipeline(schema, kinds, params, ESTIMATOR_FIELDS)


def fit(schema: Schema, params: ForestParams, train: pd.DataFrame) -> Pipeline:
    """Fit preprocessing and forest on the training rows only."""
    pipeline = build_forest(schema, params.validate())
    pipeline.fit(train[schema.features], train[schema.target])
    # Trees are fitted in parallel; a served model predicts a row or a few, where joblib's
    # thread pool costs ~50 ms a call and the trees themselves well under 10.
    pipeline.named_steps["model"].set_params(n_jobs=1)
    return pipeline


def log(
    model: Pipeline,
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    *,
    version_tags: dict[str, str] | None = None,
):
    """Log (and register, when model_name is given) the fitted forest as the served
    forest (its Pipeline and the same trees compiled); the one place that chooses how a
    forest is logged."""
    from mlcycle.models.served_forest import log_forest

    return log_forest(model, schema, train, model_name, version_tags=version_tags)


# --- search --------------------------------------------------------------------------


def suggest(trial: optuna.trial.BaseTrial, task: str, seed: int, n_jobs: int = 1) -> ForestParams:
    """n_jobs=1 inside a trial: parallel trials, not parallel trees, use the cores."""
    return ForestParams(
        n_estimators=trial.suggest_int("n_estimators", 50, 400, step=25),
        max_depth=trial.suggest_int("max_depth", 3, 30, log=True),
        min_samples_split=trial.suggest_int("min_samples_split", 2, 20),
        min_samples_leaf=trial.suggest_int("min_samples_leaf", 1, 10),
        max_features=trial.suggest_float("max_features", 0.2, 1.0),
        class_weight=(
            trial.suggest_categorical("class_weight", [None, "balanced", "balanced_subsample"])
            if task == "classification"
            else None
        ),
        seed=seed,
        n_jobs=n_jobs,
    )


def default_trial(task: str) -> dict:
    """The search-space values of ForestParams' defaults (optimize's first trial). The
    space has no unlimited depth: its deepest, 30, stands for it (a tree of the bank's
    few thousand rows stops splitting long before, on min_samples_split)."""
    d = ForestParams()
    values = {
        "n_estimators": d.n_estimators,
        "max_depth": 30,
        "min_samples_split": d.min_samples_split,
        "min_samples_leaf": d.min_samples_leaf,
        "max_features": d.max_features,
    }
    return values | ({"class_weight": d.class_weight} if task == "classification" else {})


def best_params(trial: optuna.trial.FrozenTrial, task: str, seed: int) -> dict:
    """The trial's forest, refitted on every core (n_jobs=-1), as JSON-ready values."""
    import optuna

    return asdict(suggest(optuna.trial.FixedTrial(trial.params), task, seed, n_jobs=-1))


class ForestObjective:
    """Mean k-fold cross-validated score of a forest on the training rows."""

    def __init__(
        self, schema: Schema, train: pd.DataFrame, metric: str, seed: int, folds: int = CV_FOLDS
    ):
        self.schema, self.train, self.metric, self.seed = schema, train, metric, seed
        self.folds = list(_folds(schema, train, folds, seed))
        self.curves: dict[int, dict[str, list[float]]] = {}

    def __call__(self, trial: optuna.Trial) -> float:
        import numpy as np

        from mlcycle.models.tuning import validation_score

        params = suggest(trial, self.schema.task, self.seed)
        scores = []
        for fit_index, valid_index in self.folds:
            fit_rows, valid_rows = self.train.iloc[fit_index], self.train.iloc[valid_index]
            model = build_forest(self.schema, params)
            model.fit(fit_rows[self.schema.features], fit_rows[self.schema.target])
            scores.append(validation_score(model, self.schema, valid_rows, self.metric))
        return float(np.nanmean(scores)) if not np.isnan(scores).all() else float("nan")


def _folds(schema: Schema, train: pd.DataFrame, folds: int, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    if len(train) < 2 * folds:
        raise MlcycleError(
            f"{len(train)} training rows are too few for {folds}-fold cross-validation"
        )
    if schema.task == "classification" and train[schema.target].value_counts().min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return splitter.split(train, train[schema.target])
    return KFold(folds, shuffle=True, random_state=seed).split(train)


def objective(
    schema: Schema, train: pd.DataFrame, metric: str, direction: str, seed: int
) -> ForestObjective:
    """Cross-validated: the direction does not matter, nothing is reported per step."""
    return ForestObjective(schema, train, metric, seed)


def pruner() -> optuna.pruners.BasePruner:
    """The forest reports no intermediate values: nothing to prune."""
    import optuna

    return optuna.pruners.NopPruner()
