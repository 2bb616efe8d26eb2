"""What a monitor run shows in the MLflow UI besides its HTML, so runs can be compared there.

The report's drift table and its champion-vs-challenger table are logged as MLflow tables
(`tables/drift.json`, `tables/comparison.json`, the same rows the page shows), and each
column's drift score becomes a metric: `drift_score.<feature>` for the features,
`<role>_prediction_drift_score` for each model's predictions (the target's is
`target_drift_score`, logged with the run's other drift metrics).

Metric names are what MLflow accepts on every store and OS: letters and digits of any
script (`nationalité_francaise` is kept), `_ - . ` and space. A column whose name holds
anything else (`revenu (€/mois)`, `a/b`, `a:b`) or is too long gets those characters
replaced by `_` and a short hash of its own name, so two columns never share a metric and
a column keeps its metric from one run to the next. The drift table's `metric` column
names the metric of every row."""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata

import mlflow
import pandas as pd

DRIFT_SCORE_PREFIX = "drift_score."
DRIFT_TABLE = "tables/drift.json"
COMPARISON_TABLE = "tables/comparison.json"
TARGET_SCORE_METRIC = "target_drift_score"
# MLflow's limit on a metric name (mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH).
MAX_METRIC_NAME = 250
HASH_DIGITS = 8

# MLflow 3.17 checks names with re.match(r"^[/\w.\- :]*$") (no ':' on Windows): Python's
# \w takes letters and digits of every script: 'drift_score.nationalité_francaise' is
# accepted by a SQLite store and by a tracking server (checked with 3.17.2). '/' makes a path
# ('a//b' and 'a/' are refused) and ':' is refused on Windows: both are replaced too.
_REFUSED = re.compile(r"[^\w.\- ]")


def metric_safe(name: str, prefix: str = DRIFT_SCORE_PREFIX) -> str:
    """prefix + name as a metric name MLflow accepts everywhere; a name that had to change
    (refused characters, too long) ends in `_` and 8 hex digits of its SHA-1.

    Composed and decomposed accents (NFC/NFD) read the same to a person, but MLflow refuses
    a combining mark: the name is composed first, so 'é' typed either way is kept."""
    composed = unicodedata.normalize("NFC", name)
    safe = _REFUSED.sub("_", composed)
    room = MAX_METRIC_NAME - len(prefix)
    if safe == composed and 0 < len(safe) <= room:
        return prefix + safe
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:HASH_DIGITS]
    return f"{prefix}{safe[: room - HASH_DIGITS - 1]}_{digest}"


def prediction_metric(role: str) -> str:
    """The drift score of a model's predictions, named by the model's role: the column's
    own name ('champion_prediction', or '_champion_prediction' when a feature took it)
    is an implementation detail."""
    return f"{role}_prediction_drift_score"


def metric_names(drift, owners: dict[str, str] | None = None) -> dict[str, str]:
    """column -> the metric that holds its drift score, for every row of the drift table."""
    owners = owners or {}
    names = {}
    for column in drift.columns:
        if column.role == "feature":
            names[column.column] = metric_safe(column.column)
        elif column.role == "target":
            names[column.column] = TARGET_SCORE_METRIC
        elif column.column in owners:
            names[column.column] = prediction_metric(owners[column.column])
    return names


def drift_metrics(drift, owners: dict[str, str] | None = None) -> dict[str, float]:
    """Each feature's and each model's predictions' drift score (finite ones), and whether
    the predictions drifted; the target's are logged with the run's other drift metrics."""
    names = metric_names(drift, owners)
    numbers = {}
    for column in drift.columns:
        name = names.get(column.column)
        if column.role == "target" or name is None or not math.isfinite(column.score):
            continue
        numbers[name] = float(column.score)
        if column.role == "prediction":
            numbers[name.removesuffix("_score")] = float(column.drifted)
    return numbers


def drift_table(drift, owners: dict[str, str] | None = None) -> pd.DataFrame:
    """The report's drift table, row for row, with the metric each score is logged as."""
    names = metric_names(drift, owners)
    return pd.DataFrame(
        [
            {
                "column": c.column,
                "role": c.role,
                "type": c.kind,
                "method": c.method,
                "score": c.score,
                "threshold": c.threshold,
                "drifted": c.drifted,
                "metric": names.get(c.column, ""),
            }
            for c in drift.columns
        ],
        columns=["column", "role", "type", "method", "score", "threshold", "drifted", "metric"],
    )


def comparison_table(comparison: list[dict]) -> pd.DataFrame:
    """The report's champion-vs-challenger table (`evaluate.compare` rows): one row per
    test split and metric, both values, the delta and whether the challenger is better."""
    return pd.DataFrame(
        [
            {
                "split": row["split"],
                "metric": row["metric"],
                "primary": row["primary"],
                "champion": row["champion"],
                "challenger": row["challenger"],
                "delta": row["delta"],
                "challenger_is": row["mark"],
            }
            for row in comparison
        ],
        columns=["split", "metric", "primary", "champion", "challenger", "delta", "challenger_is"],
    )


def log_tables(drift, comparison: list[dict], owners: dict[str, str] | None = None) -> None:
    """Both tables on the active run, where the MLflow UI shows tables; a table the report
    has not (drift not measured, no model scored) is not logged."""
    if drift is not None:
        mlflow.log_table(drift_table(drift, owners), DRIFT_TABLE)
    if comparison:
        mlflow.log_table(comparison_table(comparison), COMPARISON_TABLE)
