"""Drift between reference and current rows, with Evidently 0.7.

Reads two frames (features, target and, when models exist, their predictions on the same
rows); returns an Evidently snapshot and a plain summary read from `snapshot.dict()` by
metric name and config (never by position): per column the method Evidently chose, its
score, threshold and verdict; the share of drifted features; target and prediction drift.
Data quality is `mlcycle.monitoring.quality`; the snapshot's own HTML is written by
`mlcycle.monitoring.report`."""

from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import dataclass, field

import pandas as pd

from mlcycle.config import AUTO_SAMPLE_SIZE  # why this size: there
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.monitoring.evaluate import predict

log = logging.getLogger(__name__)

SAMPLE_SEED = 0
# The dataset counts as drifted when at least this share of its features drifted.
DRIFT_SHARE = 0.5

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"


@dataclass
class ColumnDrift:
    column: str
    role: str  # feature, target or prediction
    kind: str  # numerical or categorical
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    """What the report and the logged metrics need; `snapshot` is kept for its own HTML."""

    columns: list[ColumnDrift]
    drift_share: float
    n_drifted: int
    n_features: int
    share_threshold: float
    reference_rows: int
    current_rows: int
    sample_rows: dict[str, int]
    snapshot: object = field(default=None, repr=False)

    @property
    def dataset_drift(self) -> bool:
        return self.n_features > 0 and self.drift_share >= self.share_threshold

    @property
    def sampled(self) -> bool:
        return (
            self.sample_rows["reference"] < self.reference_rows
            or self.sample_rows["current"] < self.current_rows
        )

    def by_role(self, role: str) -> list[ColumnDrift]:
        return [c for c in self.columns if c.role == role]

    def drifted_features(self) -> list[str]:
        return [c.column for c in self.by_role("feature") if c.drifted]

    def logged(self) -> dict[str, float]:
        """The run's drift metrics (the contract's names)."""
        return {
            "drift_share": self.drift_share,
            "n_drifted_columns": float(self.n_drifted),
            "dataset_drift": float(self.dataset_drift),
            "drift_sample_rows": float(self.sample_rows["current"]),
        }


def sample_size_for(rows: int, sample_size: int) -> int:
    """sample_size 0 means automatic: every row up to AUTO_SAMPLE_SIZE."""
    if sample_size < 0:
        raise MlcycleError(
            f"parameter sample_size must be 0 (automatic) or positive, got {sample_size}"
        )
    limit = sample_size or AUTO_SAMPLE_SIZE
    return min(rows, limit)


def sample_rows(frame: pd.DataFrame, size: int, seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """A seeded random sample without replacement; the frame itself when it is small."""
    if size >= len(frame):
        return frame
    return frame.sample(n=size, random_state=seed).reset_index(drop=True)


# Evidently's "chisquare" (its default for categories, and for numbers with 3 to 5 values,
# when the reference has up to 1,000 rows) is a goodness-of-fit test against the
# reference's counts taken as exact: it ignores that the reference is a sample too, and
# flags a column drawn from the very same distribution far more often than its 5 % level
# (a third of the time on 150 rows a side). The same statistic as a test of homogeneity
# of the two samples (a 2 x k contingency table) holds its level.
HOMOGENEITY = "chisquare_homogeneity"


def _chi_square_homogeneity(reference_data, current_data, feature_type, threshold):
    from scipy.stats import chi2_contingency

    table = pd.concat([reference_data.value_counts(), current_data.value_counts()], axis=1).fillna(
        0
    )
    if len(table) < 2:  # one category on both sides: nothing moved
        return 1.0, False
    p_value = float(chi2_contingency(table.to_numpy().T, correction=False).pvalue)
    return p_value, p_value < threshold


@functools.cache
def _register_homogeneity() -> None:
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    register_stattest(
        StatTest(
            name=HOMOGENEITY,
            display_name="chi-square homogeneity p_value",
            allowed_feature_types=[ColumnType.Categorical, ColumnType.Numerical],
        ),
        default_impl=_chi_square_homogeneity,
    )


def homogeneity_columns(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> list[str]:
    """The columns Evidently would test with its goodness-of-fit chi-square (its own rule:
    a reference of at most 1,000 rows; more than 2 values among categories, 3 to 5 among
    numbers): they get the homogeneity test instead. Larger samples keep Evidently's
    distances, binary columns its two-proportion z-test."""
    _register_homogeneity()
    if len(reference) > 1000:
        return []
    chosen = []
    for column in [*numeric, *categorical]:
        values = pd.concat([reference[column], current[column]]).nunique()
        if values > 2 and (column in categorical or values <= 5):
            chosen.append(column)
    return chosen


def reference_and_current(splits: Splits) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every old row against every new row: drift is about the data, not the split."""
    return (
        pd.concat([splits.reference_train, splits.reference_test], ignore_index=True),
        pd.concat([splits.current_train, splits.current_test], ignore_index=True),
    )


def prediction_column(role: str, taken) -> str:
    """A column name for a model's predictions that no feature or target already uses."""
    name = f"{role}_prediction"
    while name in taken:
        name = f"_{name}"
    return name


def run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: Schema,
    predictors: dict | None = None,
    sample_size: int = 0,
    drift_share: float = DRIFT_SHARE,
) -> DriftResult:
    """Evidently's DataDriftPreset (with its tests) on the features, plus ValueDrift on the
    target and on each model's predictions. `predictors` maps a column name to a model
    (anything `evaluate.predict` takes); it predicts on the sampled rows of both sides,
    except where `current` already holds that column (a scored batch's own predictions)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    sizes = {
        "reference": sample_size_for(len(reference), sample_size),
        "current": sample_size_for(len(current), sample_size),
    }
    ref = sample_rows(reference, sizes["reference"])
    cur = sample_rows(current, sizes["current"])
    predictors = predictors or {}
    if predictors:
        ref, cur = ref.copy(), cur.copy()
        for name, model in predictors.items():
            ref[name] = predict(model, ref[schema.features])
            if name not in current.columns:
                cur[name] = predict(model, cur[schema.features])
    predictions = list(predictors)
    # An unlabelled batch has no target: its drift is the features' and predictions' only.
    labelled = schema.target in reference.columns and schema.target in current.columns
    extra = [schema.target, *predictions] if labelled else predictions
    numeric, categorical = list(schema.numeric), list(schema.categorical)
    (numeric if schema.task == "regression" else categorical).extend(extra)
    ref, cur = _for_evidently(ref, numeric, categorical), _for_evidently(cur, numeric, categorical)
    kinds = {**{c: "numerical" for c in numeric}, **{c: "categorical" for c in categorical}}
    empty = empty_features(ref, cur, schema.features, kinds)
    if empty:  # Evidently raises on a column with no value on one side: measure the rest
        gone = [c.column for c in empty]
        ref, cur = ref.drop(columns=gone), cur.drop(columns=gone)
        numeric = [c for c in numeric if c not in gone]
        categorical = [c for c in categorical if c not in gone]
    measured = [c for c in schema.features if c not in {e.column for e in empty}]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    counted = homogeneity_columns(ref, cur, numeric, categorical)
    report = Report(
        [
            DataDriftPreset(
                columns=measured,
                drift_share=drift_share,
                per_column_method={c: HOMOGENEITY for c in counted if c in schema.features},
            ),
            *[ValueDrift(column=c, method=HOMOGENEITY if c in counted else None) for c in extra],
        ],
        include_tests=True,
    )
    with warnings.catch_warnings():
        # scipy warns about empty bins of categories absent on one side; the test copes.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
    roles = {c: "feature" for c in schema.features}
    if labelled:
        roles[schema.target] = "target"
    roles.update({p: "prediction" for p in predictions})
    columns, share, count = parse_snapshot(snapshot.dict(), roles, kinds)
    n_features = len(schema.features)
    if empty:
        columns, count = [*empty, *columns], count + len(empty)
        share = count / n_features
    log.info(
        "drift: %d of %d features drifted (share %.2f) on %d/%d rows",
        count,
        n_features,
        share,
        sizes["reference"],
        sizes["current"],
    )
    return DriftResult(
        columns=columns,
        drift_share=share,
        n_drifted=count,
        n_features=n_features,
        share_threshold=drift_share,
        reference_rows=len(reference),
        current_rows=len(current),
        sample_rows=sizes,
        snapshot=snapshot,
    )


def empty_features(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], kinds: dict[str, str]
) -> list[ColumnDrift]:
    """Features with no value at all on one side, as drifted columns: a feed that lost a
    column (or a one-row batch with a hole) is the plainest drift there is, and Evidently
    refuses to measure it, which left the whole batch without a drift figure."""
    out = []
    for column in features:
        sides = [
            side
            for side, frame in (("current", current), ("reference", reference))
            if column in frame.columns and frame[column].isna().all()
        ]
        if sides:
            method = f"every value missing on the {' and '.join(sides)} side"
            out.append(
                ColumnDrift(
                    column, "feature", kinds.get(column, "?"), method, math.nan, math.nan, True
                )
            )
    return out


def _for_evidently(frame: pd.DataFrame, numeric: list[str], categorical: list[str]):
    """Numbers as floats, categories as strings with missing kept missing."""
    out = frame[numeric + categorical].copy()
    for col in numeric:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    for col in categorical:
        out[col] = out[col].astype("object").where(out[col].notna(), None)
        out[col] = out[col].map(lambda v: v if v is None else str(v))
    return out


def parse_snapshot(
    data: dict, roles: dict[str, str], kinds: dict[str, str]
) -> tuple[list[ColumnDrift], float, int]:
    """Per-column drift and the features' drifted share from `snapshot.dict()`.

    Metrics are found by their config type and column; a column's verdict is the status of
    the test bound to its metric id (FAIL = drift), so the direction of the score
    (p-value or distance) never has to be guessed."""
    verdicts = {}
    for test in data.get("tests", []):
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id:
            verdicts[metric_id] = test.get("status") == "FAIL"
    columns, share, count, seen = [], None, None, set()
    for metric in data.get("metrics", []):
        config = metric.get("config") or {}
        kind = config.get("type")
        if kind == _DRIFTED_COUNT:
            share, count = metric["value"]["share"], metric["value"]["count"]
        elif kind == _VALUE_DRIFT and config.get("column") in roles:
            name = config["column"]
            if name in seen:
                continue
            seen.add(name)
            score = _number(metric.get("value"))
            threshold = _number(config.get("threshold"))
            drifted = verdicts.get(metric.get("id"))
            if drifted is None:  # tests disabled: fall back to the method's direction
                drifted = _drifted(config.get("method", ""), score, threshold)
            columns.append(
                ColumnDrift(
                    column=name,
                    role=roles[name],
                    kind=kinds.get(name, "?"),
                    method=_METHOD_NAMES.get(config.get("method"), str(config.get("method", "?"))),
                    score=score,
                    threshold=threshold,
                    drifted=bool(drifted),
                )
            )
    if share is None:
        raise MlcycleError("the Evidently snapshot has no DriftedColumnsCount metric")
    # Drifted features first; target and predictions after, in the order they were given.
    order = {"feature": 0, "target": 1, "prediction": 2}
    position = {name: i for i, name in enumerate(roles)}
    columns.sort(
        key=lambda c: (
            order.get(c.role, 3),
            c.role == "feature" and not c.drifted,
            c.column if c.role == "feature" else position[c.column],
        )
    )
    return columns, float(share), int(count)


_METHOD_NAMES = {HOMOGENEITY: "chi-square homogeneity p_value"}


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _drifted(method: str, score: float, threshold: float) -> bool:
    if "p_value" in method:
        return score < threshold
    return score >= threshold
