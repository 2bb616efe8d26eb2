"""The RandomForest champion: preprocessing and forest in one scikit-learn Pipeline."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import Pipeline

from mlcycle.data import Schema
from mlcycle.errors import MlcycleError
from mlcycle.features import build_preprocessor


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


def build_forest(schema: Schema, params: ForestParams) -> Pipeline:
    common = dict(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        min_samples_split=params.min_samples_split,
        min_samples_leaf=params.min_samples_leaf,
        max_features=params.max_features,
        random_state=params.seed,
        n_jobs=params.n_jobs,
    )
    if schema.task == "classification":
        forest = RandomForestClassifier(class_weight=params.class_weight, **common)
    else:
        forest = RandomForestRegressor(**common)
    return Pipeline([("preprocess", build_preprocessor(schema)), ("model", forest)])


def fit_forest(schema: Schema, params: ForestParams, train: pd.DataFrame) -> Pipeline:
    """Fit preprocessing and forest on the training rows only."""
    pipeline = build_forest(schema, params.validate())
    pipeline.fit(train[schema.features], train[schema.target])
    # Trees are fitted in parallel; a served model predicts a row or a few, where joblib's
    # thread pool costs ~50 ms a call and the trees themselves well under 10.
    pipeline.named_steps["model"].set_params(n_jobs=1)
    return pipeline


def params_dict(params: ForestParams) -> dict:
    return asdict(params)
