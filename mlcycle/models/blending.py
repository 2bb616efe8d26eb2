"""The blend candidate: a weighted mean of the best candidates' predictions (of their
class probabilities for a classifier), its weights chosen on main's judging slice of the
current train rows (never a test row), kept when that slice says it beats the best single
candidate.

What it blends: each candidate's predictions on the slice, logged by the step that
trained it (`SLICE_PREDICTIONS`), from its parameters fitted without the slice (optimize's
best and the refits, `mlcycle.models.selection.slice_fit`; retrain's network, which never
trains on the slice). The weights are then applied to the registered members.

How the weights are chosen: the convex combinations of the `MAX_MEMBERS` best candidates
on a grid of `GRID_STEP`, the best of them on the task's primary metric (the metric the
blend is judged by, R² or F1, optimised directly; a finer grid or non-negative least
squares fits the slice's noise: see `docs/main.md`, "The blend").

How it is judged: the slice in two seeded halves, the weights chosen on each half
predicting the other (cross-fitting), so the blend's score is never measured on the rows
that chose its weights; then the promotion gate's paired bootstrap
(`mlcycle.monitoring.gate`) of (blend − best single) on the slice, kept when its lower
bound at `confidence` is above 0, its score above the best single one's, and the weights
blend at least two members.

`confidence` is 0.5 by default: the bound is then the median gain over the resamples, and
the blend is kept when it is better more often than not. Not the gate's 0.95: the best
single candidate's score is the largest of several measured on these same rows, so it is
already optimistic (the winner's curse), while the blend's cross-fitted score is not;
asking the blend to clear it by the noise as well counts the noise twice (at 0.95 the
blend was kept 3 times in 27 main runs of the scenario bank, benchmarks/RESULTS.md).
monitor's gate still judges a kept blend on the test rows as any other challenger.
Nothing here talks to MLflow but `log_slice_predictions` and `read_slice_predictions`."""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mlcycle.ingest.data import Schema
from mlcycle.monitoring.evaluate import predict, predict_proba
from mlcycle.monitoring.gate import MIN_TEST_ROWS, Interval, paired_bootstrap
from mlcycle.monitoring.metrics import PRIMARY, evaluate

SLICE_PREDICTIONS = "validation/slice_predictions.parquet"
TRUTH, PREDICTION, PROBA_PREFIX = "truth", "prediction", "proba_"
MAX_MEMBERS = 3
GRID_STEP = 0.1
CONFIDENCE = 0.5  # the median gain over the resamples (module docstring: why not 0.95)
RESAMPLES = 2000


# ------------------------------------------------------- the candidates' slice predictions


def slice_predictions(model, schema: Schema, judge: pd.DataFrame) -> pd.DataFrame:
    """What a candidate answers on the slice: the truth, its prediction, and for a
    classifier one probability column per class of the schema (in that order)."""
    features = judge[schema.features]
    frame = pd.DataFrame({TRUTH: judge[schema.target].to_numpy()})
    frame[PREDICTION] = predict(model, features)
    if schema.task == "classification":
        proba = predict_proba(model, features, list(schema.classes))
        if proba is not None:
            # A class the fitted rows lacked (a rare one) has no column: probability 0.
            for c in schema.classes:
                values = proba[c] if c in proba.columns else 0.0
                frame[f"{PROBA_PREFIX}{c}"] = np.asarray(values, dtype="float64")
    return frame


def log_slice_predictions(frame: pd.DataFrame) -> None:
    """The slice predictions as an artifact of the active run (SLICE_PREDICTIONS)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(SLICE_PREDICTIONS).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(SLICE_PREDICTIONS).parent))


def read_slice_predictions(run_id: str) -> pd.DataFrame | None:
    """A run's slice predictions, or None when it logged none (an earlier version)."""
    try:
        path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{SLICE_PREDICTIONS}")
    except Exception:  # noqa: BLE001 - a missing artifact: MlflowException or OSError
        return None
    return pd.read_parquet(path)


# ----------------------------------------------------------------------------- the choice


@dataclass
class Candidate:
    """A candidate as the blend sees it: its name and what it answered on the slice."""

    label: str
    values: np.ndarray  # regression: predictions; classification: probabilities (n, classes)
    labels: np.ndarray  # what it predicts (values again for a regression)


@dataclass
class Outcome:
    """What the blend step decided, with its reason in one line."""

    kept: bool
    reason: str
    members: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    score: float | None = None  # the blend's cross-fitted score on the slice
    best: str = ""  # the best single candidate
    best_score: float | None = None
    interval: Interval | None = None

    def metrics(self, metric: str) -> dict[str, float]:
        out = {} if self.score is None else {f"validation_{metric}": self.score}
        if self.interval is not None:
            i = self.interval
            out |= {"blend_gain": i.delta, "blend_gain_ci_low": i.low, "blend_gain_ci_high": i.high}
        return out | {f"weight.{m}": w for m, w in zip(self.members, self.weights, strict=True)}


def candidate_of(label: str, frame: pd.DataFrame, schema: Schema) -> Candidate | None:
    """A candidate from its slice predictions; None when a classifier's logged no
    probabilities (a blend of labels is a vote, not a weighted mean)."""
    labels = frame[PREDICTION].to_numpy()
    if schema.task == "regression":
        return Candidate(label, labels.astype("float64"), labels)
    columns = [f"{PROBA_PREFIX}{c}" for c in schema.classes]
    if not all(c in frame.columns for c in columns):
        return None
    return Candidate(label, frame[columns].to_numpy(dtype="float64"), labels)


def simplex_grid(k: int, step: float = GRID_STEP) -> np.ndarray:
    """Every weight vector of k members on the grid, summing to 1, fewest members first
    (so a tie keeps the simpler blend)."""
    n = int(round(1 / step))
    rows = [c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n]
    rows.sort(key=lambda c: (sum(1 for v in c if v), [-v for v in c]))
    return np.asarray(rows, dtype="float64") / n


def score_of(task: str, truth, values: np.ndarray, classes: list) -> float:
    """The primary metric of blended values (probabilities: their most probable class)."""
    return evaluate(task, truth, answers_of(task, values, classes))[PRIMARY[task]]


def answers_of(task: str, values: np.ndarray, classes: list) -> np.ndarray:
    """Blended values as answers: the values, or the most probable class."""
    if task == "regression":
        return values
    return np.asarray(classes, dtype=object)[values.argmax(axis=1)]


def blended(members: list[Candidate], weights: np.ndarray) -> np.ndarray:
    return sum(w * m.values for w, m in zip(weights, members, strict=True))


def best_weights(
    task: str, truth, members: list[Candidate], classes: list, rows=None
) -> np.ndarray:
    """The grid's weights with the best primary metric on the rows (all by default)."""
    rows = np.arange(len(truth)) if rows is None else rows
    y = np.asarray(truth, dtype=object if task == "classification" else "float64")[rows]
    picked = [rows_of(m, rows) for m in members]
    grid = simplex_grid(len(members))
    scores = [score_of(task, y, blended(picked, w), classes) for w in grid]
    return grid[int(np.argmax(scores))]


def cross_fitted(task: str, truth, members: list[Candidate], classes: list, seed: int):
    """The blend's answers on every slice row from weights chosen on the other half."""
    order = np.random.default_rng(seed).permutation(len(truth))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    values = np.zeros_like(members[0].values)
    for fit, held in (halves, halves[::-1]):
        weights = best_weights(task, truth, members, classes, fit)
        values[held] = blended([rows_of(m, held) for m in members], weights)
    return answers_of(task, values, classes)


def rows_of(member: Candidate, rows) -> Candidate:
    """The candidate on some of the slice's rows."""
    return Candidate(member.label, member.values[rows], member.labels[rows])


def decide(
    task: str,
    truth,
    candidates: list[Candidate],
    classes: list,
    seed: int,
    confidence: float = CONFIDENCE,
) -> Outcome:
    """Blend the best candidates on the slice; keep the blend when the lower bound at
    `confidence` of its cross-fitted gain over the best single candidate is above 0."""
    metric = PRIMARY[task]
    if len(candidates) < 2:
        return Outcome(False, f"{len(candidates)} candidate(s) with slice predictions: no blend")
    if len(truth) < 2 * MIN_TEST_ROWS:
        return Outcome(
            False,
            f"{len(truth)} slice rows: too few to choose weights on one half and judge them "
            f"on the other (at least {2 * MIN_TEST_ROWS})",
        )
    singles = {c.label: evaluate(task, truth, c.labels)[metric] for c in candidates}
    ranked = sorted(candidates, key=lambda c: -singles[c.label])
    members, best = ranked[:MAX_MEMBERS], ranked[0]
    weights = best_weights(task, truth, members, classes)
    answers = cross_fitted(task, truth, members, classes, seed)
    score = float(evaluate(task, truth, answers)[metric])
    interval = paired_bootstrap(
        task, truth, best.labels, answers, n_resamples=RESAMPLES, confidence=confidence, seed=seed
    )
    used = [(m.label, float(w)) for m, w in zip(members, weights, strict=True) if w > 0]
    outcome = Outcome(
        False,
        "",
        [m for m, _ in used],
        [w for _, w in used],
        score,
        best.label,
        singles[best.label],
        interval,
    )
    mix = " + ".join(f"{w:.1f} {m}" for m, w in used)
    versus = (
        f"cross-fitted {metric} {score:.4f} against {best.label} {singles[best.label]:.4f} "
        f"on {len(truth)} slice rows, gain {interval.text()}"
    )
    if len(used) < 2:
        outcome.reason = f"the best weights are {best.label} alone: no blend ({versus})"
    elif interval.low <= 0 or not score > singles[best.label]:
        # Both: at 0.5 the resamples' median gain can be above 0 while the slice's own is
        # not, and main nominates by the slice's scores.
        outcome.reason = f"blend {mix} is not better at {confidence:.0%}: {versus}"
    else:
        outcome.kept, outcome.reason = True, f"blend {mix} kept: {versus}"
    return outcome
