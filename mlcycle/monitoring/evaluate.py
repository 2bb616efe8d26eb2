"""Score any model (an sklearn estimator or an MLflow pyfunc) on named splits: the one
place that predicts and computes metrics, for the steps that log them and for the
monitor's report, which shows the very figures the gate decided on."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.monitoring.metrics import LOWER_IS_BETTER, PRIMARY, evaluate, metric_names, prefixed

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


@dataclass
class Scores:
    """A model's metrics on named splits, with the predictions they were computed from
    (kept for the report's charts and per-class table: predicting twice costs seconds
    on large splits)."""

    metrics: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    probabilities: dict[str, pd.DataFrame | None] = field(default_factory=dict, repr=False)


def score_frames(
    model, schema: Schema, frames: Mapping[str, pd.DataFrame], names=TEST_SPLITS
) -> Scores:
    """Predict once per split; metrics prefixed with the split's name: {'current_test_r2': ...}."""
    scores = Scores()
    for name in names:
        frame = frames[name]
        features, target = frame[schema.features], frame[schema.target]
        predicted = predict(model, features)
        proba = None
        if schema.task == "classification":
            proba = predict_proba(model, features, schema.classes)
        scores.predictions[name], scores.probabilities[name] = predicted, proba
        scores.metrics.update(prefixed(evaluate(schema.task, target, predicted, proba), name))
    return scores


def score(model, schema: Schema, splits: Splits, names=TEST_SPLITS) -> dict[str, float]:
    """Metrics per split, prefixed with the split's name: {'current_test_r2': ...}."""
    return score_frames(model, schema, dict(splits.items()), names).metrics


def compare(
    task: str, champion: dict[str, float] | None, challenger: dict[str, float] | None
) -> list[dict]:
    """One row per test split and metric: both values (None when that model has none), the
    challenger's delta and whether it is better, minding the metrics where lower wins."""
    rows = []
    for split in TEST_SPLITS:
        for metric in metric_names(task):
            key = f"{split}_{metric}"
            old = (champion or {}).get(key)
            new = (challenger or {}).get(key)
            delta, mark = None, ""
            if _finite(old) and _finite(new):
                delta = new - old
                if abs(delta) < 1e-12:
                    mark = "same"
                else:
                    better = delta < 0 if metric in LOWER_IS_BETTER else delta > 0
                    mark = "better" if better else "worse"
            rows.append(
                {
                    "split": split,
                    "metric": metric,
                    "champion": old,
                    "challenger": new,
                    "delta": delta,
                    "mark": mark,
                    "primary": metric == PRIMARY[task],
                }
            )
    return rows


def per_class(y_true, y_pred, labels: list) -> dict:
    """label -> {'precision', 'recall', 'f1'} of one model's predictions."""
    from sklearn import metrics as skm  # on need: score imports this module, never this

    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i])}
        for i, label in enumerate(labels)
    }


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
