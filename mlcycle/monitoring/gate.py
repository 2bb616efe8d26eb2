"""The promotion gate's noise: a paired bootstrap of the primary metric's difference.

A few hundred test rows measure R² or F1 to a couple of points at best, so a challenger
no better than the champion beats it on the point estimate about half the time. Here the
same test rows are resampled for both models (paired: one draw of row indices per
resample, shared by the two), which cancels what the rows do to both alike (a hard row is
hard for both) and leaves the uncertainty of the difference (challenger − champion).

The gate is one-sided on each split, so `confidence` is a one-sided level: with 0.95,
`low` is the 5th percentile of the resampled differences (a 95 % lower bound) and `high`
the 95th (a 95 % upper bound); together they are the 90 % two-sided percentile interval.
Why not the 95 % two-sided interval (2.5th percentile): the rule "the lower bound exceeds
`min_improvement`" is a one-sided test, and the two-sided interval runs it at 97.5 %.
Measured in `benchmarks/bench_gate.py` (200 trials, 400 rows a split): challengers of
equal quality are promoted 2.5-4.0 % of the time (two-sided 1.0-2.5 %, point rule
31-43 %), and a challenger better by +0.02 R² on both splits 84.5 % (two-sided 77.5 %).

What 400 rows cannot do: +0.02 R² on current_test alone, with the models equal on
reference_test, is promoted 44.5-58.5 % at R² 0.90 and about 17 % at R² 0.80. The
difference's standard error there is 0.008-0.019, and any test at 5 % needs the effect
to be 2.5 standard errors for 80 % power: 370-530 rows at R² 0.90, 2100-2300 at 0.80.
The reference check at its bound costs the rest (it refuses some challengers equal
there); judged at its point estimate it would promote 72-81.5 % at R² 0.90 but let
8 % of equal forest refits through.

The rule (`judge`), on the task's primary metric:
  - current_test: the lower bound of the gain exceeds 0 and is at least `min_improvement`;
  - reference_test: the upper bound of the loss (champion − challenger) is at most
    `tolerance`; with `tolerance=None` ("auto") at most the point gain on current_test,
    as `promotion.decide` allows without intervals, plus what a change of relationship
    surely costs any model of the present there (`mlcycle.monitoring.relationship`: 0 when the
    reference rows still describe the present).
`confidence=0` draws nothing: both bounds are the point estimate and the rule is
`promotion.decide`'s point rule exactly.

Per-resample metrics are sums over the drawn rows of per-row terms (R²'s squares, F1's
confusion counts) for all resamples at once, so 2000 resamples of 400 rows take
milliseconds, and agree with `mlcycle.monitoring.metrics` on the full sample and on any resample."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.monitoring.metrics import PRIMARY, evaluate

# When the test rows cannot decide (`undecidable`; docs/monitor.md, "When the rows cannot
# decide"). Below 30 rows the bootstrap itself misleads: its percentiles of a statistic
# of n rows are too narrow by about sqrt((n - 1) / n) and skewed, and R² on a handful of
# rows swings by more than its whole useful range (5 rows gave bounds +0.20..+2.75).
MIN_TEST_ROWS = 30
# No floor per class: the gate judges the weighted F1, where a class of c test rows out of
# n weighs c/n; its own F1's swings are in the paired bootstrap like any other row's. (A
# floor of 5 rows a class once refused a challenger +0.18 F1 [+0.11, +0.25] better on
# 146 rows because one class had 2 of them.)
# The primary metrics' useful range: F1 in [0, 1]; R² of any model worth serving in
# [0, 1] too (below 0 it is worse than predicting the mean). Bounds wider than this say
# the rows cannot tell the models apart at all.
METRIC_RANGE = 1.0

# Drawn row indices per chunk of resamples (8 bytes each: 32 MB), so a test split of a
# million rows is resampled in slices instead of one n_resamples × n_rows matrix.
CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """The primary metric's difference (challenger − champion) on one split."""

    metric: str
    delta: float
    low: float
    high: float
    confidence: float
    # One difference per resample; empty when confidence is 0 (nothing was drawn).
    deltas: np.ndarray = field(compare=False, repr=False)
    rows: int = 0

    def text(self) -> str:
        """`95% bounds +0.0021..+0.0240`: the two one-sided bounds at `confidence` (not
        called a 95 % CI: together they make a 90 % one)."""
        return f"{self.confidence * 100:.4g}% bounds {self.low:+.4f}..{self.high:+.4f}"


def paired_bootstrap(
    task: str,
    y_true,
    pred_champion,
    pred_challenger,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The difference of the primary metric on all rows, its resampled distribution and the
    one-sided bounds at `confidence` (the module docstring says why one-sided)."""
    metric = _primary(task)
    y, champion, challenger = _rows(y_true, pred_champion, pred_challenger)
    _check_confidence(confidence)
    if n_resamples < 1:
        raise MlcycleError(f"parameter n_resamples must be >= 1, got {n_resamples}")
    # The point estimate is what `evaluate.score` logs, so `decide` sees the same gain.
    delta = evaluate(task, y, challenger)[metric] - evaluate(task, y, champion)[metric]
    if confidence == 0:
        return Interval(metric, delta, delta, delta, 0.0, np.empty(0), len(y))
    rng = np.random.default_rng(seed)
    deltas = np.concatenate(
        [
            metric_on_resamples(task, y, challenger, drawn)
            - metric_on_resamples(task, y, champion, drawn)
            for drawn in _resample_indices(rng, len(y), n_resamples)
        ]
    )
    low, high = np.quantile(deltas, [1 - confidence, confidence])
    return Interval(metric, delta, float(low), float(high), confidence, deltas, len(y))


def judge(
    current: Interval,
    reference: Interval,
    *,
    min_improvement: float = 0.0,
    tolerance: float | None = None,
    change: Interval | None = None,
) -> tuple[bool, bool, float, Interval]:
    """(better on current_test, holds on reference_test, the loss allowed there, the
    reference interval judged).

    With intervals of confidence 0 this is `promotion.decide`'s point rule: the gain must
    be positive and at least min_improvement, the loss at most the tolerance. `change`
    (auto tolerance only; `mlcycle.monitoring.relationship`): what following the present does on the
    reference rows, resampled on the same draws; the reference check then judges the
    challenger's loss beyond it (`beyond_change`)."""
    better = current.low > 0 and current.low >= min_improvement
    allowed = max(current.delta, 0.0) if tolerance is None else tolerance
    if tolerance is None and change is not None:
        reference = beyond_change(reference, change)
    holds = -reference.low <= allowed
    return better, holds, allowed, reference


def beyond_change(reference: Interval, change: Interval) -> Interval:
    """The challenger's difference on reference_test with the relationship change's part
    taken out: (challenger − champion) − (as current − as reference), resample by resample.

    Both intervals must come from the same draws (same rows, resamples and seed): the
    difference is then paired, and the noise the two share (hard rows) cancels, where
    comparing one's upper bound with the other's lower bound would count it twice."""
    delta = reference.delta - change.delta
    if not reference.confidence or not change.confidence:
        return Interval(reference.metric, delta, delta, delta, 0.0, np.empty(0), reference.rows)
    if reference.deltas.shape != change.deltas.shape or reference.rows != change.rows:
        raise ValueError("the relationship change was resampled on other draws than the gate's")
    deltas = reference.deltas - change.deltas
    low, high = np.quantile(deltas, [1 - reference.confidence, reference.confidence])
    return Interval(
        reference.metric,
        delta,
        float(low),
        float(high),
        reference.confidence,
        deltas,
        reference.rows,
    )


def undecidable(task: str, targets: dict, bootstraps: dict | None = None) -> str | None:
    """Why the test rows cannot decide between two models, or None when they can: a split
    with fewer than MIN_TEST_ROWS rows, or bounds wider than the metric's range. `targets` maps a
    split to its target values, `bootstraps` a split to its `Interval`."""
    for split, values in targets.items():
        y = pd.Series(np.asarray(values).ravel()).dropna()
        if len(y) < MIN_TEST_ROWS:
            return f"{split} has {len(y)} row(s), fewer than the {MIN_TEST_ROWS} the gate needs"
        interval = (bootstraps or {}).get(split)
        # Wide bounds on one side of 0 still decide which model is better (an R² loss of
        # whole units on old rows a repricing moved is a loss, however wide).
        if (
            interval is not None
            and interval.high - interval.low > METRIC_RANGE
            and interval.low <= 0 <= interval.high
        ):
            return (
                f"on {split} the {interval.metric} difference's {interval.text()} span more "
                f"than the metric's range ({METRIC_RANGE:g}) and hold 0"
            )
    return None


def metric_on_resamples(task: str, y_true, y_pred, indices: np.ndarray) -> np.ndarray:
    """The primary metric of one model on each resample, a resample being a row of
    `indices` (the test rows drawn); `np.arange(n)[None]` is the full sample."""
    y, pred = np.asarray(y_true), np.asarray(y_pred)
    if _primary(task) == "r2":
        return _r2_on_resamples(y.astype(float), pred.astype(float), indices)
    return _weighted_f1_on_resamples(y, pred, indices)


# Sums over drawn rows are gathers and numpy sums, not a counts matrix @ per-row terms:
# measured here on 2 cores shared with other jobs, OpenBLAS's threads made 2000 resamples
# of 400 rows take 0.19 s (0.04 s with one BLAS thread); gathers take 0.02 s and no BLAS.
def _r2_on_resamples(y: np.ndarray, pred: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """1 − SSE/SST per resample, with scikit-learn's answer when the drawn targets are all
    equal (1 for a perfect fit, else 0)."""
    # Centred: SST = Σy² − (Σy)²/n cancels badly on loan amounts of 10⁴ otherwise.
    drawn = (y - y.mean())[indices]
    squares = (drawn**2).sum(axis=1)
    sst = squares - drawn.sum(axis=1) ** 2 / indices.shape[1]
    sse = ((y - pred) ** 2)[indices].sum(axis=1)
    constant = sst <= 1e-9 * squares
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1 - sse / sst
    return np.where(constant, np.where(sse == 0, 1.0, 0.0), r2)


def _weighted_f1_on_resamples(y: np.ndarray, pred: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """F1 averaged over classes weighted by their support, as `metrics.classification_metrics`
    computes it (binary included), from per-resample confusion counts.

    A class absent from a resample's targets weighs 0, so the labels of the full sample
    give the same average as scikit-learn's labels of each resample."""
    codes, _ = pd.factorize(np.concatenate([y, pred]), use_na_sentinel=False)
    k = int(codes.max()) + 1
    resamples = len(indices)
    # Class code + k × resample number: one bincount counts every resample's classes.
    offset = k * np.arange(resamples)[:, None]
    truth, said = codes[: len(y)][indices] + offset, codes[len(y) :][indices] + offset

    def count(cells: np.ndarray) -> np.ndarray:
        return np.bincount(cells, minlength=resamples * k).reshape(resamples, k)

    support, predicted, tp = count(truth.ravel()), count(said.ravel()), count(truth[truth == said])
    # 2·tp / (2·tp + fp + fn) = 2·tp / (support + predicted); 0 where both are 0.
    denominator = support + predicted
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denominator > 0, 2 * tp / denominator, 0.0)
    return (support * f1).sum(axis=1) / support.sum(axis=1)


def _resample_indices(
    rng: np.random.Generator, rows: int, n_resamples: int
) -> Iterator[np.ndarray]:
    """Per resample (a matrix row), `rows` test rows drawn with replacement, once, for both
    models: what pairs them. In chunks, so a large split needs no resamples × rows matrix."""
    chunk = max(1, CHUNK_CELLS // rows)
    for start in range(0, n_resamples, chunk):
        yield rng.integers(0, rows, size=(min(chunk, n_resamples - start), rows))


def _primary(task: str) -> str:
    if task not in PRIMARY:
        raise MlcycleError(f"parameter task must be regression or classification, got {task!r}")
    return PRIMARY[task]


def _rows(y_true, pred_champion, pred_challenger) -> tuple[np.ndarray, ...]:
    arrays = tuple(np.asarray(a).ravel() for a in (y_true, pred_champion, pred_challenger))
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise MlcycleError(
            "y_true, pred_champion and pred_challenger must have one value per test row, "
            f"got {', '.join(str(len(a)) for a in arrays)}"
        )
    if not arrays[0].size:
        raise MlcycleError("the test split has no rows to compare the models on")
    return arrays


def _check_confidence(confidence: float) -> None:
    """0 is the point rule; below 0.5 a one-sided "lower bound" would sit above the median
    and make the gate laxer than the point rule."""
    if confidence != 0 and not 0.5 <= confidence < 1:
        raise MlcycleError(
            f"parameter confidence must be 0 (point rule) or in [0.5, 1), got {confidence}"
        )


def bootstrap_figure(interval: Interval, min_improvement: float = 0.0, title: str = ""):
    """Histogram of the resampled differences with the bounds, the point estimate and the
    bar the lower bound must clear: what the gate saw, for the report."""
    from mlcycle.monitoring.charts import plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if interval.deltas.size:
        ax.hist(interval.deltas, bins=50, color="#9bb7d4", edgecolor="white")
        ax.axvspan(interval.low, interval.high, color="#4c72b0", alpha=0.15)
        ax.axvline(interval.low, color="#4c72b0", linestyle="--", label=interval.text())
        ax.axvline(interval.high, color="#4c72b0", linestyle="--")
    ax.axvline(interval.delta, color="black", label=f"all rows {interval.delta:+.4f}")
    ax.axvline(min_improvement, color="#c44e52", label=f"min_improvement {min_improvement:g}")
    ax.set_xlabel(f"{interval.metric}: challenger − champion")
    ax.set_ylabel("resamples")
    ax.set_title(title or f"paired bootstrap, {interval.rows} rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
