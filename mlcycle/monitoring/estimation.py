"""Performance of a model on rows whose labels are not in yet, estimated from labelled
rows the model never trained on (the calibration rows: its etl run's held-out rows).

Pure functions over frames and arrays; nothing here reads MLflow or files.

Regression: direct loss estimation (DLE, as NannyML names it). Gradient-boosted trees
(scikit-learn's HistGradientBoostingRegressor with its defaults, which are LightGBM's
that NannyML uses: 100 trees, 31 leaves, 20 rows a leaf, rate 0.1) learn, from the
features and the model's prediction, the calibration rows' squared error, absolute
error and signed error; their mean over the batch is the batch's estimated MSE and
MAE (RMSE = the root of the MSE).

R² needs the batch's target variance, which is unknown without labels. NannyML 0.13's
DLE does not estimate R² at all (its metrics are MAE, MAPE, MSE, MSLE, RMSE, RMSLE, read
in its source). Here y = p + e (prediction plus error), so
    Var(y) = Var(p) + Var(e) + 2 Cov(p, e),
and with e's conditional mean m1(x) and conditional second moment m2(x) learnt on the
calibration rows (p is a function of x, so Cov(p, e) = Cov(p, m1(x))):
    Var(y) ≈ Var(p) + mean(m2) − mean(m1)² + 2 Cov(p, m1),   R² ≈ 1 − mean(m2) / Var(y).
The covariance term matters for forests, whose predictions shrink toward the mean (their
errors grow with the prediction); dropping it and the bias (Var(p) + MSE, the "simple"
variance) is measured beside it in benchmarks/bench_estimation.py.

Classification: confidence-based performance estimation (CBPE). The model's class
probabilities are calibrated on the calibration rows (one isotonic regression per class,
one-vs-rest, rows renormalised); the expected confusion matrix of the batch is the sum,
over its rows, of the calibrated probabilities in the column of the predicted class;
expected accuracy, and weighted precision, recall and F1 (as `mlcycle.monitoring.metrics` weighs
them: by support, here the expected support), are read from it. ROC AUC is not
estimated.

Both assume what a label-free estimate must: the relationship between features and
target is the one of the calibration rows (covariate shift only), and, for CBPE, that
calibrated probabilities stay calibrated on the batch. A change of the relationship
itself (a repricing) is invisible to them; the tests and the benchmark show it.

The band: a bootstrap over the calibration rows (refitting the loss models or the
calibrators on each resample) and over the batch's rows (a sample of at most
`BAND_ROWS`). Calibration rows are few (hundreds), so the loss model's own error is
what dominates for any batch of more than a few hundred rows; the batch's resampling
adds its sampling. The label noise of the batch itself (how far its realised metric
falls from its expectation given the features) is not in the band. Above
`BAND_CALIBRATION_ROWS` calibration rows the refits see that many rows (an m-out-of-n
bootstrap, its spread shrunk by sqrt(m / n)), so the band's cost does not grow with the
etl run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlcycle.ingest.data import Schema
from mlcycle.monitoring import estimators
from mlcycle.monitoring.estimators import Preprocessor
from mlcycle.monitoring.metrics import PRIMARY, evaluate

# Measured here: the two refits of a resample cost 0.45 s on 400 calibration rows and
# 1 s on 4,000 on one loaded core; at load 6, 1.6 s on 2,000 and 1.0 s on 1,000. Ten
# resamples of at most 1,000 rows keep the band within ~10 s whatever the size of the etl
# run (20 of 2,000 made the label-free monitor of 100,000 rows cost twice the labelled).
RESAMPLES = 10
BAND_CALIBRATION_ROWS = 1000
CONFIDENCE = 0.90
# The band's bootstrap predicts on at most this many batch rows per resample: the band
# is about the calibration's few hundred rows, not about a 100,000-row batch.
BAND_ROWS = 5000
# Below this many rows the batch's primary metric is not judged: no band, and no R²
# (its target variance cannot be told from a handful of rows; a one-row batch came out
# at R² -0.14 "band up to -0.09" against 0.57, and watch retrained on it). The gate's
# own floor, for the same reason (mlcycle.monitoring.gate.MIN_TEST_ROWS).
MIN_BATCH_ROWS = 30


@dataclass
class Estimate:
    """What the page and the run record: the batch's estimated metrics, the band of the
    primary one, and the realised metrics on the calibration rows for comparison."""

    task: str
    method: str  # DLE or CBPE
    metrics: dict[str, float]
    low: float
    high: float
    reference: dict[str, float]
    batch_rows: int
    calibration_rows: int
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str:
        return PRIMARY[self.task]

    def logged(self) -> dict[str, float]:
        """estimated_<metric> (finite ones), the primary's band, reference_<metric>."""
        out = {f"estimated_{k}": v for k, v in self.metrics.items() if math.isfinite(v)}
        if math.isfinite(self.low) and math.isfinite(self.high):
            out[f"estimated_{self.primary}_low"] = self.low
            out[f"estimated_{self.primary}_high"] = self.high
        out.update(
            {
                f"reference_{k}": v
                for k, v in self.reference.items()
                if k in self.metrics and math.isfinite(v)
            }
        )
        return out


# --- one estimate, with its band ------------------------------------------------------


@dataclass
class Rows:
    """Rows as the estimators take them: features, the model's predictions, its class
    probabilities (classification: columns in the schema's class order), and the target
    when known (the calibration rows)."""

    features: pd.DataFrame
    predictions: np.ndarray
    proba: np.ndarray | None = None
    y: np.ndarray | None = None

    def take(self, index: np.ndarray) -> Rows:
        return Rows(
            self.features.iloc[index].reset_index(drop=True),
            self.predictions[index],
            None if self.proba is None else self.proba[index],
            None if self.y is None else self.y[index],
        )

    def __len__(self) -> int:
        return len(self.predictions)


@dataclass
class Estimator:
    """Loss models (or calibrators) fitted on every calibration row, and on each bootstrap
    resample of them: fitted once, applied to as many batches as come."""

    schema: Schema
    full: object
    resampled: list
    reference: dict[str, float]
    calibration_rows: int
    confidence: float
    seed: int
    variance: str
    resample_rows: int = 0  # rows each resampled fit saw (0: every calibration row)


def _one_thread():
    from threadpoolctl import threadpool_limits

    # Measured here: a 100-tree fit on 1,500 rows takes 0.3 s on one thread and 5 s with
    # OpenMP's threads on two cores that other work shares; the fits are small.
    return threadpool_limits(limits=1, user_api="openmp")


def fit(
    schema: Schema,
    calibration: Rows,
    *,
    preprocessor: Preprocessor,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    variance: str = "covariance",
) -> Estimator:
    """Everything learnt from the calibration rows, band included."""
    if schema.task == "classification" and calibration.proba is None:
        raise ValueError("CBPE needs the model's class probabilities")
    rng = np.random.default_rng(seed)
    # m-out-of-n bootstrap above BAND_CALIBRATION_ROWS: each refit sees m rows drawn from
    # the n, and its deviation is shrunk by sqrt(m / n) (`estimate_batch`).
    m = min(len(calibration), BAND_CALIBRATION_ROWS)
    with _one_thread():
        full = estimators.fit_rows(schema, calibration, seed, True, preprocessor)
        resampled = [
            estimators.fit_rows(
                schema,
                calibration.take(rng.integers(0, len(calibration), m)),
                seed + i + 1,
                False,
                preprocessor,
            )
            for i in range(resamples)
        ]
    proba = None
    if calibration.proba is not None:
        proba = pd.DataFrame(calibration.proba, columns=list(schema.classes))
    reference = evaluate(schema.task, calibration.y, calibration.predictions, proba)
    return Estimator(
        schema, full, resampled, reference, len(calibration), confidence, seed, variance, m
    )


def estimate_batch(estimator: Estimator, batch: Rows) -> Estimate:
    """The batch's estimated metrics, and the primary one's band: each resampled fit
    applied to a resample of (a sample of at most BAND_ROWS of) the batch's rows."""
    schema = estimator.schema
    if schema.task == "classification" and batch.proba is None:
        raise ValueError("CBPE needs the model's class probabilities")
    primary = PRIMARY[schema.task]
    rng = np.random.default_rng(estimator.seed)
    with _one_thread():
        metrics = estimators.apply_rows(schema, estimator.full, batch, estimator.variance)
        sample = batch
        if len(batch) > BAND_ROWS:
            sample = batch.take(rng.choice(len(batch), BAND_ROWS, replace=False))
        values = []
        for fitted in estimator.resampled:
            rows = sample.take(rng.integers(0, len(sample), len(sample)))
            value = estimators.apply_rows(schema, fitted, rows, estimator.variance)[primary]
            if math.isfinite(value):
                values.append(value)
    low = high = math.nan
    notes = []
    if len(batch) < MIN_BATCH_ROWS:
        values = []
        if schema.task == "regression":
            metrics["r2"] = math.nan
        notes.append(
            f"{len(batch)} rows are too few to judge the batch's {primary} "
            f"(at least {MIN_BATCH_ROWS} needed): no band"
        )
    if values:
        tail = (1 - estimator.confidence) / 2
        low, high = (float(q) for q in np.quantile(values, [tail, 1 - tail]))
        # The band is centred on the estimate from every row (the resamples saw a sample).
        centre = float(np.median(values))
        shrink = math.sqrt(
            (estimator.resample_rows or estimator.calibration_rows) / estimator.calibration_rows
        )
        low = metrics[primary] - shrink * (centre - low)
        high = metrics[primary] + shrink * (high - centre)
    return Estimate(
        task=schema.task,
        method="DLE" if schema.task == "regression" else "CBPE",
        metrics=metrics,
        low=low,
        high=high,
        reference=estimator.reference,
        batch_rows=len(batch),
        calibration_rows=estimator.calibration_rows,
        confidence=estimator.confidence,
        resamples=len(estimator.resampled),
        notes=notes,
    )


def estimate(schema: Schema, calibration: Rows, batch: Rows, **settings) -> Estimate:
    """The batch's estimated metrics with a bootstrap band of the primary one (module
    docstring), and the realised metrics on the calibration rows; `settings` are `fit`'s
    (preprocessor, resamples, confidence, seed, variance)."""
    estimator = fit(schema, calibration, **settings)
    return estimate_batch(estimator, batch)
