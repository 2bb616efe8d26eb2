"""Quality metrics as flat dicts of floats, named as DESIGN.md says."""

from __future__ import annotations

import numpy as np
import pandas as pd

# scikit-learn's metrics are imported in the functions that compute them: the names below
# are read by steps that compute none (score reads PROBA_PARAMS through evaluate), and
# importing scikit-learn costs ~1.5 s on 2 cores.

REGRESSION_METRICS = ("mae", "mse", "rmse", "r2")
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
# The metric that decides promotion and tuning, and whether larger is better.
PRIMARY = {"regression": "r2", "classification": "f1"}
LOWER_IS_BETTER = {"mae", "mse", "rmse"}


def metric_names(task: str) -> tuple[str, ...]:
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    from sklearn import metrics as skm

    mse = skm.mean_squared_error(y_true, y_pred)
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "mse": float(mse),
        "rmse": float(np.sqrt(mse)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def classification_metrics(y_true, y_pred, proba: pd.DataFrame | None = None) -> dict[str, float]:
    """Weighted averages so that multi-class and binary read the same way."""
    from sklearn import metrics as skm

    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(
            skm.precision_score(y_true, y_pred, average="weighted", zero_division=0)
        ),
        "recall": float(skm.recall_score(y_true, y_pred, average="weighted", zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0)),
    }
    out["roc_auc"] = roc_auc(y_true, proba)
    return out


def roc_auc(y_true, proba: pd.DataFrame | None) -> float:
    """ROC AUC from class probabilities (columns = class labels); NaN when undefined."""
    from sklearn import metrics as skm

    if proba is None:
        return float("nan")
    y_true = pd.Series(np.asarray(y_true))
    present = [c for c in proba.columns if (y_true == c).any()]
    if len(present) < 2:
        return float("nan")
    if proba.shape[1] == 2:
        positive = proba.columns[1]
        return float(skm.roc_auc_score(y_true == positive, proba[positive]))
    # Multi-class: rows whose class the model never saw cannot be scored one-vs-rest.
    known = y_true.isin(proba.columns).to_numpy()
    return float(
        skm.roc_auc_score(
            y_true[known],
            proba[known].to_numpy(),
            multi_class="ovr",
            average="weighted",
            labels=list(proba.columns),
        )
    )


def evaluate(task: str, y_true, y_pred, proba: pd.DataFrame | None = None) -> dict[str, float]:
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    return classification_metrics(y_true, y_pred, proba)


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """{'r2': .9} with 'current_test' -> {'current_test_r2': .9}."""
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


def is_better(task_metric: str, new: float, old: float, margin: float = 0.0) -> bool:
    """True when new beats old by at least margin, in the metric's direction."""
    if task_metric in LOWER_IS_BETTER:
        return new <= old - margin
    return new >= old + margin
