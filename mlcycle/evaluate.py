"""Score any model (an sklearn estimator or an MLflow pyfunc) on named splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlcycle.data import Schema
from mlcycle.metrics import evaluate, prefixed
from mlcycle.split import Splits

TEST_SPLITS = ("reference_test", "current_test")
# Pyfunc models built here accept this param, as MLflow's sklearn flavour does.
PROBA_PARAMS = {"predict_method": "predict_proba"}


def predict(model, features: pd.DataFrame) -> np.ndarray:
    out = model.predict(features)
    if isinstance(out, pd.DataFrame):
        out = out.iloc[:, 0]
    return np.asarray(out)


def predict_proba(model, features: pd.DataFrame, classes: list) -> pd.DataFrame | None:
    """Class probabilities with class labels as columns, or None when the model has none.

    Works on an estimator, on a pyfunc whose flavour keeps the estimator (MLflow's sklearn
    pyfunc answers labels only, whatever params say), and on a pyfunc that answers
    params={"predict_method": "predict_proba"} (mlcycle's network)."""
    estimator = model
    if not hasattr(estimator, "predict_proba") and hasattr(model, "get_raw_model"):
        try:
            estimator = model.get_raw_model()
        except Exception:  # noqa: BLE001 - flavours without a raw model raise anything
            estimator = model
    if hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
        proba = estimator.predict_proba(features)
        return pd.DataFrame(proba, columns=list(estimator.classes_))
    try:
        proba = model.predict(features, params=PROBA_PARAMS)
    except Exception:  # noqa: BLE001 - a pyfunc without probabilities is still a classifier
        return None
    proba = pd.DataFrame(proba)
    if proba.shape[1] != len(classes) or not np.issubdtype(proba.values.dtype, np.floating):
        return None
    proba.columns = classes
    return proba


def score(model, schema: Schema, splits: Splits, names=TEST_SPLITS) -> dict[str, float]:
    """Metrics per split, prefixed with the split's name: {'current_test_r2': ...}."""
    out: dict[str, float] = {}
    for name in names:
        frame = getattr(splits, name)
        features, target = frame[schema.features], frame[schema.target]
        predicted = predict(model, features)
        proba = None
        if schema.task == "classification":
            proba = predict_proba(model, features, schema.classes)
        out.update(prefixed(evaluate(schema.task, target, predicted, proba), name))
    return out
