"""Which candidate is kept: every model a pipeline trained, judged on the current train
rows (never a test row), the best nominated.

How a candidate is judged: cross-fitted (`cross_fit`). The current train rows are dealt
into `FOLDS` seeded folds; the candidate's parameters are fitted on all folds but one and
predict that one, so each row is answered once by a fit that never saw it; the score
(`validation_<metric>`, logged in the candidate's own run) is measured on those answers,
and they are what the blend candidate weighs. optimize's best, the tree families refitted
on the new rows and retrain's network are judged on the same rows, folds and seed.
Why every row and not one slice: a slice of 15 % (300 rows of the bundled data, 90 of a
small one) measures R² or F1 to a point or two, and main's candidates are often closer
than that; one slice nominated the worse of two candidates 0.008 apart on the test rows
(docs/quality.md). Why not the test rows: monitor's gate judges the winner on them, and
a choice made there would make that verdict optimistic. Nothing here talks to MLflow."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models.blending import PREDICTION, PROBA_PREFIX, TRUTH, slice_predictions
from mlcycle.models.candidates import validation_slice
from mlcycle.models.network import NetworkParams
from mlcycle.monitoring.metrics import LOWER_IS_BETTER, evaluate, prefixed

VERSION_TAG = "mlcycle.model_version"


FOLDS = 5


def judging_slice(current_train: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to fit on, rows to judge on): retrain's validation slice for this seed (what
    the boosted trees' early stopping watches)."""
    return validation_slice(current_train, NetworkParams(seed=seed))


def folds(rows: int, seed: int, k: int = FOLDS) -> list[np.ndarray]:
    """The row positions of each fold: a seeded permutation dealt into k folds (fewer
    when there are fewer rows), every row in exactly one; none below 2 rows."""
    if rows < 2:
        return []
    order = np.random.default_rng(seed).permutation(rows)
    return [np.sort(order[i :: min(k, rows)]) for i in range(min(k, rows))]


def cross_fit(fit, schema: Schema, current_train: pd.DataFrame, seed: int):
    """(validation_<metric> of the answers, the answers): every current train row answered
    by `fit(rows)` fitted on the other folds (`folds`), as `blending.slice_predictions`
    frames them, in the rows' order; ({}, None) when there are too few rows to fold."""
    parts = folds(len(current_train), seed)
    if not parts:
        return {}, None
    rows = current_train.reset_index(drop=True)
    answers = []
    for held in parts:
        model = fit(rows.drop(index=held).reset_index(drop=True))
        judge = rows.iloc[held]
        answers.append(slice_predictions(model, schema, judge).set_axis(held))
    frame = pd.concat(answers).sort_index().reset_index(drop=True)
    return answers_metrics(schema, frame), frame


def answers_metrics(schema: Schema, frame: pd.DataFrame) -> dict[str, float]:
    """Every metric of the task on cross-fitted answers, named validation_<metric>."""
    proba = None
    columns = [f"{PROBA_PREFIX}{c}" for c in schema.classes]
    if schema.task == "classification" and all(c in frame.columns for c in columns):
        proba = pd.DataFrame(frame[columns].to_numpy(), columns=list(schema.classes))
    truth, predicted = frame[TRUTH], frame[PREDICTION]
    return prefixed(evaluate(schema.task, truth, predicted, proba), "validation")


def slice_fit(
    family, schema: Schema, params, current_train: pd.DataFrame, seed: int
) -> tuple[dict[str, float], pd.DataFrame | None]:
    """The family's parameters cross-fitted on current train (`cross_fit`): their
    validation_<metric> and the answers the blend candidate weighs."""
    return cross_fit(lambda rows: family.fit(schema, params, rows), schema, current_train, seed)


def slice_metrics(
    family, schema: Schema, params, current_train: pd.DataFrame, seed: int
) -> dict[str, float]:
    """slice_fit's validation_<metric> alone ({} when there are too few rows)."""
    return slice_fit(family, schema, params, current_train, seed)[0]


@dataclass(frozen=True)
class Entry:
    """A candidate as main sees it: who trained it, its version, its slice score."""

    label: str  # e.g. optimize-nn, refit-hgb, retrain
    version: str
    score: float | None  # None: the run logged no score on the slice
    run_id: str = ""  # the step's run: its slice predictions, for the blend


def registered_version(run, step: str) -> str:
    """The model version a step's run recorded registering (its `mlcycle.model_version`)."""
    version = run.data.tags.get(VERSION_TAG)
    if not version:
        raise MlcycleError(f"step {step} (run {run.info.run_id}) registered no model")
    return version


def entry_of(run, label: str, metric: str) -> Entry:
    """A candidate from its step's run: the version it registered, its slice score."""
    score = run.data.metrics.get(f"validation_{metric}")
    return Entry(label, registered_version(run, label), score, run.info.run_id)


def choose(entries: list[Entry], metric: str) -> tuple[Entry, str]:
    """(the winner, the reason in one line): the best score on the slice in the metric's
    direction; on an exact tie, the earlier entry. Entries without a score only win when
    none has one (then the last trained, as before scores were compared)."""
    scored = [e for e in entries if e.score is not None and math.isfinite(e.score)]
    if not scored:
        return entries[-1], "no candidate has a score on the validation slice: the last trained"
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    best = max(scored, key=lambda e: (sign * e.score, -entries.index(e)))
    others = ", ".join(
        f"{e.label} {e.score:.4f}" if e.score is not None else f"{e.label} unscored"
        for e in entries
        if e is not best
    )
    return best, (
        f"{best.label} (version {best.version}) has the best validation {metric} "
        f"{best.score:.4f} (others: {others or 'none'})"
    )


def scores(entries: list[Entry], metric: str) -> dict[str, float]:
    """Each scored candidate's score as main logs it: validation_<metric>.<label>."""
    return {f"validation_{metric}.{e.label}": e.score for e in entries if e.score is not None}


def blend_parameters(etl_run: str, model_name: str, entries: list[Entry], seed: int) -> dict:
    """The blend step's parameters over these candidates."""
    runs = ",".join(f"{e.label}={e.run_id}" for e in entries if e.run_id)
    return dict(etl_run=etl_run, model_name=model_name, candidates=runs, seed=seed)


def blend_shown(run, metric: str) -> tuple[dict[str, float], dict[str, str]]:
    """What main shows of its blend run, kept or not: its cross-fitted score beside the
    candidates' (`validation_<metric>.blend`), whether it was kept and why."""
    score = run.data.metrics.get(f"validation_{metric}")
    tags = {k: run.data.tags.get(k, "") for k in ("mlcycle.blend_kept", "mlcycle.blend_reason")}
    return ({} if score is None else {f"validation_{metric}.blend": score}), tags
