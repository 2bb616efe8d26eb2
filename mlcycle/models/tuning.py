"""Hyper-parameter search with Optuna: studies, the metric they optimise, and one MLflow
run per trial.

A study lives in an Optuna storage (`mlcycle.scaleout.optuna_storage`) that several workers may
share; each family says what it searches and how a trial is scored
(`mlcycle.models.families`), on the training rows it is given and never a test split. Each
trial this worker runs is an MLflow run nested under the worker's own, with the trial's
parameters, validation score, per-epoch curves and state."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings

import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.monitoring.evaluate import predict, predict_proba
from mlcycle.monitoring.metrics import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    PRIMARY,
    REGRESSION_METRICS,
    evaluate,
    metric_names,
)

log = logging.getLogger(__name__)

# The study's own fields, set by the process that creates it; a resuming run must agree.
STUDY_ATTRS = ("family", "metric", "task")
TRIAL_STEP_TAG = "optimize-trial"


# --- parameters -------------------------------------------------------------------------


def check_metric_name(metric: str) -> str:
    """Refuse a name no task knows, before any data is read ('' means the primary one)."""
    known = REGRESSION_METRICS + CLASSIFICATION_METRICS
    if metric and metric not in known:
        raise MlcycleError(
            f"parameter metric must be one of {', '.join(known)} "
            f"(or empty for the task's primary metric), got {metric!r}"
        )
    return metric


def resolve_metric(metric: str, task: str) -> tuple[str, str]:
    """The metric to optimise and its direction ('maximize' or 'minimize')."""
    metric = check_metric_name(metric) or PRIMARY[task]
    if metric not in metric_names(task):
        raise MlcycleError(
            f"parameter metric {metric!r} does not apply to a {task} task: "
            f"use one of {', '.join(metric_names(task))}"
        )
    return metric, "minimize" if metric in LOWER_IS_BETTER else "maximize"


def default_study_name(model_name: str, family: str, metric: str) -> str:
    """Stable across runs, so that re-running the step resumes the study."""
    return f"{model_name}-{family}-{metric}"


# --- study ------------------------------------------------------------------------------


def open_study(
    storage,
    name: str,
    direction: str,
    attrs: dict[str, str],
    seed: int,
    pruner: optuna.pruners.BasePruner | None = None,
) -> tuple[optuna.Study, bool]:
    """Load the study or create it; returns (study, created).

    The process that creates the study samples from `seed`, so one worker is
    reproducible. A process joining or resuming it gets a seed mixed with its process id
    and the trials so far: the same seed again would propose the same points again."""
    created = False
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        try:
            study = optuna.create_study(study_name=name, storage=storage, direction=direction)
            for key, value in attrs.items():
                study.set_user_attr(key, value)
            created = True
        except optuna.exceptions.DuplicatedStudyError:  # another worker was faster
            study = optuna.load_study(study_name=name, storage=storage)
    _check_study(study, name, direction, attrs)
    sampler_seed = seed if created else _joiner_seed(seed, len(study.trials))
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    log.info(
        "%s study %s (%d trial(s) so far, %s %s)",
        "created" if created else "resuming",
        name,
        len(study.trials),
        direction,
        attrs.get("metric"),
    )
    return study, created


def _check_study(study: optuna.Study, name: str, direction: str, attrs: dict) -> None:
    if study.direction.name.lower() != direction:
        raise MlcycleError(
            f"study {name!r} exists and is to {study.direction.name.lower()}, "
            f"but metric {attrs.get('metric')!r} is to {direction}: pass "
            "another study_name"
        )
    existing = study.user_attrs
    for key in STUDY_ATTRS:
        if key in existing and key in attrs and existing[key] != attrs[key]:
            raise MlcycleError(
                f"study {name!r} exists with {key}={existing[key]!r}, not "
                f"{attrs[key]!r}: pass another study_name"
            )
    if existing.get("etl_run") and attrs.get("etl_run") not in (None, existing["etl_run"]):
        # Allowed (main re-runs on new data), but earlier trials were scored on other rows.
        log.warning(
            "study %s was created on etl run %s; this run tunes on etl run %s: "
            "earlier trials' values were measured on other rows",
            name,
            existing["etl_run"],
            attrs["etl_run"],
        )


def _joiner_seed(seed: int, n_trials: int) -> int:
    return int(np.random.SeedSequence([seed, n_trials, os.getpid()]).generate_state(1)[0])


def run_search(
    study: optuna.Study,
    objective,
    n_trials: int,
    timeout: float | None,
    n_jobs: int,
    progress: bool,
) -> None:
    """Run trials; a failing trial is recorded as failed and the search goes on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=timeout,
            n_jobs=n_jobs,
            catch=(Exception,),
            show_progress_bar=progress,
            gc_after_trial=False,
        )


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    try:
        return study.best_trial
    except ValueError as exc:
        raise MlcycleError(
            f"study {study.study_name!r} has no completed trial yet "
            "(every trial failed or was pruned)"
        ) from exc


# --- a trial's score ------------------------------------------------------------------


def validation_score(model, schema: Schema, frame: pd.DataFrame, metric: str) -> float:
    features, target = frame[schema.features], frame[schema.target]
    proba = None
    if schema.task == "classification" and metric == "roc_auc":
        proba = predict_proba(model, features, schema.classes)
    return evaluate(schema.task, target, predict(model, features), proba)[metric]


# --- MLflow: one nested run per trial ---------------------------------------------------


class TrialLogger:
    """Wrap an objective so that each trial is an MLflow run nested under `parent_run_id`.

    Uses MlflowClient with explicit run ids, never the fluent active-run stack, because
    trials run in worker threads when n_jobs > 1."""

    def __init__(
        self, objective, parent_run_id: str, experiment_id: str, metric: str, study_name: str
    ):
        self.objective, self.parent_run_id = objective, parent_run_id
        self.experiment_id, self.metric, self.study_name = experiment_id, metric, study_name
        self.client = MlflowClient()
        self.states: dict[int, str] = {}
        self._lock = threading.Lock()

    def __call__(self, trial: optuna.Trial) -> float:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.number}",
            tags={
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                config.STEP_TAG: TRIAL_STEP_TAG,
                "optuna.study_name": self.study_name,
                "optuna.trial_number": str(trial.number),
            },
        )
        run_id = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("mlflow_parent_run_id", self.parent_run_id)
        try:
            value = self.objective(trial)
        except optuna.TrialPruned:
            self._finish(run_id, trial, "pruned", None)
            raise
        except Exception as exc:
            self._finish(run_id, trial, "failed", None, error=f"{type(exc).__name__}: {exc}")
            raise
        if value is None or not math.isfinite(value):
            self._finish(run_id, trial, "failed", None, error=f"objective returned {value}")
        else:
            self._finish(run_id, trial, "complete", value)
        return value

    def _finish(
        self,
        run_id: str,
        trial: optuna.Trial,
        state: str,
        value: float | None,
        error: str | None = None,
    ) -> None:
        now = int(time.time() * 1000)
        metrics = (
            [Metric(f"validation_{self.metric}", float(value), now, 0)] if value is not None else []
        )
        curves = getattr(self.objective, "curves", {}).pop(trial.number, {})
        for key, values in curves.items():
            metrics += [Metric(key, float(v), now, step) for step, v in enumerate(values, 1)]
        tags = [RunTag("trial_state", state)]
        if error:
            tags.append(RunTag("trial_error", error[:5000]))
        params = [Param(k, _text(v)) for k, v in trial.params.items()]
        try:
            self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
            self.client.set_terminated(
                run_id, {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}[state]
            )
        except Exception:  # noqa: BLE001 - a logging hiccup must not lose the Optuna trial
            log.exception("could not log trial %d to MLflow run %s", trial.number, run_id)
        with self._lock:
            self.states[trial.number] = state

    def counts(self) -> dict[str, float]:
        with self._lock:
            states = list(self.states.values())
        return {f"trials_{s}": float(states.count(s)) for s in ("complete", "pruned", "failed")}


def _text(value) -> str:
    return "" if value is None else str(value)
