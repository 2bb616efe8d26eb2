"""Hyper-parameter search with Optuna, for the forest and the network.

Reads the training rows it is given (the optimize step passes `current_train`) and never
a test split: the forest is scored by k-fold cross-validation, the network on a
validation slice of those rows. Writes the study to an Optuna storage (a journal file by
default, so that several processes can share it) and one MLflow run per trial, nested
under the worker's own run, with the trial's parameters, validation score and state."""

from __future__ import annotations

import difflib
import importlib.util
import logging
import math
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlcycle import config
from mlcycle.data import Schema
from mlcycle.errors import MlcycleError
from mlcycle.evaluate import predict, predict_proba
from mlcycle.metrics import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    PRIMARY,
    REGRESSION_METRICS,
    evaluate,
    metric_names,
)

log = logging.getLogger(__name__)

JOURNAL_FILE = "optuna-journal.log"
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
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


# --- storage ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageSpec:
    """What the `storage` parameter names: a journal file or an RDB URL."""

    kind: str  # "journal" or "rdb"
    location: str  # an absolute file path, or the URL
    display: str  # safe to log: no password

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "rdb" and self.location.startswith("sqlite")


# An RFC 3986 scheme and its colon, before any slash: "postgresql:", "sqlite:", "host:".
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")
URL_FORMS = "sqlite:///FILE, postgresql://USER@HOST[:PORT]/DB or mysql://USER@HOST[:PORT]/DB"


def parse_storage(text: str | None, state_dir: Path = config.STATE_DIR) -> StorageSpec:
    """'' -> the project's journal file; a path (or file:///path) -> a journal file there;
    sqlite:///FILE, postgresql(+driver)://USER@HOST/DB, mysql(+driver)://… -> an RDB.

    Anything else that starts like a URL (a scheme and a colon: 'postgresql:/host/db',
    'sqlite:/x.db', 'host:5432/db', 'redis://…') is refused rather than taken for a file
    name, which would silently start a new study in a stray file. A file whose name
    holds a colon is written './NAME'."""
    text = (text or "").strip()
    if not text:
        path = Path(state_dir) / JOURNAL_FILE
        return StorageSpec("journal", str(path), str(path))
    match = _SCHEME.match(text)
    if match is None or _is_drive(text):
        _refuse_missing_colon(text)
        return _journal_spec(text, text)
    scheme = match["scheme"].lower()
    family = scheme.split("+", 1)[0]
    known = family in (*RDB_SCHEMES, "file")
    if not text[match.end() :].startswith("//"):
        if known:
            raise MlcycleError(
                f"parameter storage: {_redact(text)!r} is not a valid {family} URL: "
                f"write {_form(family)}"
            )
        raise MlcycleError(
            f"parameter storage: {_redact(text)!r} is neither a journal file path nor a "
            f"storage URL ({URL_FORMS}); a file whose name holds ':' is written ./NAME"
        )
    if not known:
        hint = difflib.get_close_matches(family, ("sqlite", "postgresql", "mysql", "file"), n=1)
        raise MlcycleError(
            f"parameter storage: unsupported scheme {scheme!r} in {_redact(text)!r}"
            + (f" (did you mean {hint[0]}?)" if hint else "")
            + f"; use a journal file path, {URL_FORMS}"
        )
    if family == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise MlcycleError(
                f"parameter storage: {text!r} is not a valid file URL: write {_form('file')}"
            )
        return _journal_spec(parts.path, text)
    url = _rdb_url(text, scheme, family)
    return StorageSpec("rdb", url, _redact(url))


def _is_drive(text: str) -> bool:
    """C:\\x or C:/x: a Windows path, not a one-letter scheme."""
    return len(text) >= 3 and text[0].isalpha() and text[1] == ":" and text[2] in "\\/"


def _refuse_missing_colon(text: str) -> None:
    """'postgresql//host/db' is a URL with its colon lost, never a folder to write in."""
    head = text.split("//", 1)[0].lower()
    if "//" in text and head.split("+", 1)[0] in (*RDB_SCHEMES, "file"):
        raise MlcycleError(
            f"parameter storage: {_redact(text)!r} looks like a URL without its ':': "
            f"write {_form(head.split('+', 1)[0])}"
        )


def _form(family: str) -> str:
    return {
        "sqlite": "sqlite:///FILE (three slashes; four before an absolute path)",
        "file": "file:///ABSOLUTE/PATH or just the path",
        "mysql": "mysql://USER@HOST[:PORT]/DB",
    }.get(family, "postgresql://USER@HOST[:PORT]/DB")


def _rdb_url(text: str, scheme: str, family: str) -> str:
    """The URL as SQLAlchemy must read it; refuses one that names no file or database."""
    from sqlalchemy.engine import make_url

    bad = f"parameter storage: {_redact(text)!r} is not a valid {family} URL"
    try:
        parsed = make_url(text)
    except ValueError as exc:  # int() of the port
        raise MlcycleError(f"{bad}: its port is not a number; write {_form(family)}") from exc
    except Exception as exc:  # noqa: BLE001 - sqlalchemy's ArgumentError
        raise MlcycleError(f"{bad}: it cannot be parsed; write {_form(family)}") from exc
    if family == "sqlite":
        if parsed.host or not parsed.database or parsed.database == ":memory:":
            raise MlcycleError(f"{bad}: it names no database file; write {_form(family)}")
        return text
    if not (parsed.host or parsed.query.get("host")) or not parsed.database:
        raise MlcycleError(f"{bad}: it needs a host and a database; write {_form(family)}")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise MlcycleError(f"{bad}: port {parsed.port} is out of range")
    return _with_driver(text, scheme)


def _journal_spec(path_text: str, given: str) -> StorageSpec:
    if not path_text:
        raise MlcycleError(f"parameter storage: {given!r} names no file")
    path = Path(path_text).expanduser().resolve()
    if path.is_dir():
        raise MlcycleError(f"parameter storage: {path} is a folder; a journal file is needed")
    if path.is_file() and path.read_bytes()[:16].startswith(b"SQLite format 3"):
        raise MlcycleError(
            f"parameter storage: {path} is an SQLite database, not a journal "
            f"file: pass sqlite:///{path}"
        )
    return StorageSpec("journal", str(path), str(path))


def _with_driver(url: str, scheme: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the project ships psycopg2.
    postgres:// (Heroku's spelling) is no SQLAlchemy dialect at all: it becomes postgresql."""
    rest = url.split("://", 1)[1]
    if scheme in ("postgresql", "postgres"):
        driver = "+psycopg2" if importlib.util.find_spec("psycopg") is None else ""
        return f"postgresql{driver}://{rest}"
    if scheme.startswith("postgres+"):
        return "postgresql+" + scheme.split("+", 1)[1] + "://" + rest
    return url


def _redact(url: str) -> str:
    """The URL without its password (user:secret@host -> user:***@host), as typed: it
    may be one that no parser reads."""
    return _PASSWORD.sub(r"\1:***@", url)


_PASSWORD = re.compile(r"([^/:@\s]+):[^@/\s]*@")


def open_storage(spec: StorageSpec) -> optuna.storages.BaseStorage:
    """Open (and create if needed) the storage; every failure is one MlcycleError."""
    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(spec.location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The journal appends operations under a file lock: processes on one machine
            # (and threads in one) share it without SQLite's "database is locked".
            return JournalStorage(JournalFileBackend(str(path)))
        except (OSError, ValueError) as exc:
            raise MlcycleError(
                f"parameter storage: cannot open journal file {path}: {exc}"
            ) from exc
    engine_kwargs = {}
    if spec.is_sqlite:
        # Writers wait for each other instead of failing at once; still, SQLite serialises
        # every write, and the journal file is the better choice for parallel workers.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    attempt = 1
    while True:
        try:
            return optuna.storages.RDBStorage(spec.location, engine_kwargs=engine_kwargs)
        except Exception as exc:  # noqa: BLE001 - driver errors have no common base
            if attempt < SCHEMA_ATTEMPTS and _lost_schema_race(exc):
                # Two workers starting on an empty database both create Optuna's tables;
                # PostgreSQL lets one win and fails the other. The tables exist now.
                time.sleep(0.5 * attempt)
                attempt += 1
                continue
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MlcycleError(f"parameter storage: cannot open {spec.display}: {reason}") from exc


SCHEMA_ATTEMPTS = 4


def _lost_schema_race(exc: Exception) -> bool:
    """Did creating the schema fail because another process created it at the same time?"""
    text = str(exc).lower()
    return "already exists" in text or "duplicate key" in text


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


# --- objectives' score -----------------------------------------------------------------


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


# --- charts -----------------------------------------------------------------------------


def history_figure(study: optuna.Study):
    from mlcycle import charts  # noqa: F401 - selects the headless Agg backend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
    ax.figure.set_size_inches(7, 4)
    ax.figure.tight_layout()
    return ax.figure


def importance_figure(study: optuna.Study):
    """Parameter importances (fANOVA); None when the trials cannot tell (too few)."""
    from mlcycle import charts  # noqa: F401

    try:
        with warnings.catch_warnings():
            # Experimental API, and "few trials in some regime" advice: the chart says so.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        log.info("no parameter-importance chart: %s", exc)
        return None
    ax.figure.set_size_inches(7, 4)
    ax.figure.tight_layout()
    return ax.figure
