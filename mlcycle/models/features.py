"""The preprocessing every model carries inside itself, so a served model takes raw rows.

Fitted on training rows only (the caller fits it as the first step of a Pipeline)."""

from __future__ import annotations

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlcycle.ingest.data import Schema
from mlcycle.models.serving import MISSING_CATEGORY


def build_preprocessor(schema: Schema) -> ColumnTransformer:
    """Impute and scale numbers; impute and one-hot categories, ignoring unseen ones."""
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            # A missing category is information ("unknown"), not a value to guess.
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [("numeric", numeric, schema.numeric), ("categorical", categorical, schema.categorical)],
        remainder="drop",
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )


def features_of(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The raw feature columns, in schema order: what a served model receives."""
    return frame[schema.features]


def tree_pipeline(schema: Schema, estimators: tuple, params, names: tuple[str, ...]) -> Pipeline:
    """The raw-row preprocessing, then a tree ensemble of the task's kind: `estimators` is
    (classifier class, regressor class), given the fields `names` of a family's `params`,
    its seed as random_state and, for the classifier, its class_weight."""
    classifier, regressor = estimators
    settings = {name: getattr(params, name) for name in names}
    settings["random_state"] = params.seed
    if schema.task == "classification":
        model = classifier(class_weight=params.class_weight, **settings)
    else:
        model = regressor(**settings)
    return Pipeline([("preprocess", build_preprocessor(schema)), ("model", model)])
