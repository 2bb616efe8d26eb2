"""Which candidate is kept: every model a pipeline trained, judged on one validation slice
of the current train rows (never a test row), the best nominated.

The slice is retrain's (`mlcycle.models.candidates.validation_slice` with the seed and the
network's default share), so optimize's best, the tree families refitted on the new rows
and retrain's network are scored on the same rows: each candidate's parameters fitted on
the rest of current train, its score logged as `validation_<metric>` in its own run.
Why not the test rows: monitor's gate judges the winner on them, and a choice made there
would make that verdict optimistic. Nothing here talks to MLflow."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models.blending import PREDICTION, TRUTH, slice_predictions
from mlcycle.models.candidates import validation_metrics, validation_slice
from mlcycle.models.network import NetworkParams
from mlcycle.monitoring.gate import Interval, paired_bootstrap
from mlcycle.monitoring.metrics import LOWER_IS_BETTER

VERSION_TAG = "mlcycle.model_version"
BLEND = "blend"  # the label of main's blend candidate


def judging_slice(current_train: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to fit on, rows to judge on): retrain's validation slice for this seed."""
    return validation_slice(current_train, NetworkParams(seed=seed))


def slice_metrics(
    family, schema: Schema, params, current_train: pd.DataFrame, seed: int
) -> dict[str, float]:
    """validation_<metric> of the family's parameters fitted on current train less the
    slice, measured on the slice ({} when there are too few rows for one)."""
    return slice_fit(family, schema, params, current_train, seed)[0]


def slice_fit(
    family, schema: Schema, params, current_train: pd.DataFrame, seed: int
) -> tuple[dict[str, float], pd.DataFrame | None]:
    """slice_metrics, and the predictions behind them (`blending.slice_predictions`: what
    the blend candidate weighs), None when there is no slice."""
    fit_rows, judge = judging_slice(current_train, seed)
    if judge.empty:
        return {}, None
    model = family.fit(schema, params, fit_rows)
    return validation_metrics(model, schema, judge), slice_predictions(model, schema, judge)


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


def runner_up(entries: list[Entry], winner: Entry, metric: str) -> Entry | None:
    """The best scored candidate after the winner, when the winner is one model (a kept
    blend has no slice predictions of its own to compare); None when there is none."""
    rivals = [
        e
        for e in entries
        if e is not winner and e.label != BLEND and e.score is not None and math.isfinite(e.score)
    ]
    if winner.label == BLEND or not rivals:
        return None
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return max(rivals, key=lambda e: (sign * e.score, -entries.index(e)))


def lead(task: str, winner: pd.DataFrame, runner: pd.DataFrame, seed: int) -> Interval | None:
    """How sure the slice is of its pick: the winner's lead over the runner-up in the
    task's primary metric on the slice rows (both candidates' slice predictions), with
    the gate's paired bootstrap at 95 %. None when the two answered other rows."""
    if len(winner) != len(runner) or list(winner[TRUTH]) != list(runner[TRUTH]):
        return None
    return paired_bootstrap(task, winner[TRUTH], runner[PREDICTION], winner[PREDICTION], seed=seed)


def lead_text(winner: Entry, runner: Entry, interval: Interval) -> str:
    """The lead in one clause of main's reason."""
    verdict = "within the slice's noise" if interval.low <= 0 else "beyond the slice's noise"
    return (
        f"its lead over {runner.label} on the {interval.rows} slice rows: "
        f"{interval.delta:+.4f} ({interval.text()}), {verdict}"
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
