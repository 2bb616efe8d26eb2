"""The two label-free estimators, as `mlcycle.monitoring.estimation` applies them (its
docstring gives the method, its assumptions and the band): direct loss estimation (DLE)
for regression, R² included, and confidence-based performance estimation (CBPE) for
classification. Pure functions over frames and arrays."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcycle.ingest.data import Schema

PREDICTION = "__prediction__"
REGRESSION_ESTIMATED = ("mae", "mse", "rmse", "r2")
CLASSIFICATION_ESTIMATED = ("accuracy", "precision", "recall", "f1")
# What turns a schema's columns into the loss models' numbers: the models' own
# preprocessing (`mlcycle.models.features.build_preprocessor`), handed in by the caller
# since this wing sits below the models.
Preprocessor = Callable[[Schema], object]
# How R²'s variance is estimated (see the module docstring); "simple" only for comparison.
VARIANCES = ("covariance", "simple")


# --- regression: direct loss estimation -----------------------------------------------


def _loss_schema(schema: Schema) -> Schema:
    return Schema(
        target="__loss__",
        task="regression",
        numeric=[*schema.numeric, PREDICTION],
        categorical=list(schema.categorical),
    )


def loss_frame(schema: Schema, features: pd.DataFrame, predictions) -> pd.DataFrame:
    """The loss models' input: the features as the model read them, and its prediction."""
    frame = features[schema.features].copy()
    frame[PREDICTION] = np.asarray(predictions, dtype="float64")
    return frame


@dataclass
class LossModels:
    """Fitted models of the squared, absolute and signed error (absolute may be None)."""

    squared: object
    signed: object
    absolute: object | None = None


def _loss_model(schema: Schema, seed: int, preprocessor: Preprocessor):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("preprocess", preprocessor(_loss_schema(schema))),
            ("model", HistGradientBoostingRegressor(random_state=seed)),
        ]
    )


def fit_dle(
    schema: Schema,
    features: pd.DataFrame,
    y,
    predictions,
    preprocessor: Preprocessor,
    seed: int = 0,
    absolute: bool = True,
) -> LossModels:
    """The loss models on the calibration rows (rows without a target are left out),
    each a pipeline of `preprocessor(schema)` and gradient-boosted trees."""
    y = np.asarray(y, dtype="float64")
    keep = np.isfinite(y)
    x = loss_frame(schema, features, predictions)[keep]
    error = y[keep] - np.asarray(predictions, dtype="float64")[keep]
    fitted = {}
    for name, target in (("squared", error**2), ("signed", error), ("absolute", np.abs(error))):
        if name == "absolute" and not absolute:
            continue
        fitted[name] = _loss_model(schema, seed, preprocessor).fit(x, target)
    return LossModels(**fitted)


def regression_estimates(
    models: LossModels,
    schema: Schema,
    features: pd.DataFrame,
    predictions,
    variance: str = "covariance",
) -> dict[str, float]:
    """Estimated mae, mse, rmse and r2 of the predictions on these (unlabelled) rows."""
    p = np.asarray(predictions, dtype="float64")
    x = loss_frame(schema, features, p)
    m2 = np.maximum(models.squared.predict(x), 0.0)
    m1 = models.signed.predict(x)
    mse = float(m2.mean())
    out = {"mse": mse, "rmse": math.sqrt(mse)}
    if models.absolute is not None:
        out["mae"] = float(np.maximum(models.absolute.predict(x), 0.0).mean())
    out["r2"] = r2_from_moments(p, m1, m2, variance)
    return {k: out[k] for k in REGRESSION_ESTIMATED if k in out}


def r2_from_moments(p, m1, m2, variance: str = "covariance") -> float:
    """1 − E[e²] / Var(y), Var(y) estimated from the predictions and the error's first two
    conditional moments (module docstring); NaN when the estimated variance is not
    positive."""
    p, m1, m2 = (np.asarray(a, dtype="float64") for a in (p, m1, m2))
    mse = float(m2.mean())
    if variance == "simple":
        var_y = float(p.var()) + mse
    else:
        cov = float(((p - p.mean()) * (m1 - m1.mean())).mean())
        var_y = float(p.var()) + mse - float(m1.mean()) ** 2 + 2 * cov
    return 1 - mse / var_y if var_y > 0 else math.nan


# --- classification: confidence-based performance estimation ----------------------------


@dataclass
class Calibrators:
    """One isotonic regression per class (one-vs-rest), in the order of `classes`."""

    classes: list
    per_class: list


def fit_cbpe(classes: list, proba: np.ndarray, y) -> Calibrators:
    """Isotonic calibration of each class's probability on the calibration rows."""
    from sklearn.isotonic import IsotonicRegression

    proba = np.asarray(proba, dtype="float64")
    y = np.asarray(y)
    fitted = []
    for k, label in enumerate(classes):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        fitted.append(iso.fit(proba[:, k], (y == label).astype("float64")))
    return Calibrators(list(classes), fitted)


def calibrate(calibrators: Calibrators, proba: np.ndarray) -> np.ndarray:
    """Calibrated probabilities, each row summing to 1 (uniform where all came out 0)."""
    proba = np.asarray(proba, dtype="float64")
    out = np.column_stack([iso.predict(proba[:, k]) for k, iso in enumerate(calibrators.per_class)])
    total = out.sum(axis=1, keepdims=True)
    uniform = np.full_like(out, 1.0 / out.shape[1])
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), uniform)


def expected_confusion(calibrated: np.ndarray, predicted_index: np.ndarray) -> np.ndarray:
    """K x K expected counts: [true class, predicted class]; a predicted label outside the
    classes (index -1) counts in no column."""
    k = calibrated.shape[1]
    matrix = np.zeros((k, k))
    for j in range(k):
        matrix[:, j] = calibrated[predicted_index == j].sum(axis=0)
    return matrix


def classification_from_confusion(matrix: np.ndarray, rows: int) -> dict[str, float]:
    """Accuracy and support-weighted precision, recall and F1 of a confusion matrix."""
    tp = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    weights = support / support.sum() if support.sum() > 0 else np.zeros_like(support)
    return {
        "accuracy": float(tp.sum() / rows) if rows else math.nan,
        "precision": float((weights * precision).sum()),
        "recall": float((weights * recall).sum()),
        "f1": float((weights * f1).sum()),
    }


def predicted_index(classes: list, predicted) -> np.ndarray:
    """Each predicted label's position in `classes` (compared as text); -1 if absent."""
    position = {str(c): i for i, c in enumerate(classes)}
    return np.array([position.get(str(v), -1) for v in np.asarray(predicted)], dtype=int)


def classification_estimates(
    calibrators: Calibrators, proba: np.ndarray, predicted
) -> dict[str, float]:
    """Expected accuracy, precision, recall and F1 of the predictions on these rows."""
    calibrated = calibrate(calibrators, proba)
    index = predicted_index(calibrators.classes, predicted)
    return classification_from_confusion(expected_confusion(calibrated, index), len(index))


# --- either method, on rows as estimation holds them -------------------------------


def fit_rows(schema: Schema, calibration, seed: int, full: bool, preprocessor: Preprocessor):
    """The method's fit on calibration rows (`estimation.Rows`): DLE's loss models (`full`:
    the absolute error's too) or CBPE's calibrators."""
    if schema.task == "regression":
        return fit_dle(
            schema,
            calibration.features,
            calibration.y,
            calibration.predictions,
            preprocessor,
            seed,
            full,
        )
    return fit_cbpe(schema.classes, calibration.proba, calibration.y)


def apply_rows(schema: Schema, fitted, batch, variance: str) -> dict[str, float]:
    """The method's estimates on a batch's rows (`estimation.Rows`)."""
    if schema.task == "regression":
        return regression_estimates(fitted, schema, batch.features, batch.predictions, variance)
    return classification_estimates(fitted, batch.proba, batch.predictions)
