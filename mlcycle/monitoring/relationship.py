"""Did the relationship between features and target change from reference to current?

The promotion gate refuses a challenger that loses on `reference_test`, so a model that
forgot the old rows does not win on the new rows alone. That guard is right while the old
rows still describe the world (a covariate shift: new customers, same pricing). Where the
relationship itself changed (a repricing, a market crash, a new labelling rule), the old
rows' targets are what the present no longer does: any model that follows the present
loses on them, and the guard would keep a stale champion for being faithful to the past.

How it is measured: one HistGradientBoosting model fitted on the reference and current
training rows together, with one more feature saying which side a row came from. Each
`reference_test` row is predicted twice, once as a reference row and once as a current
row, and the paired bootstrap of `mlcycle.gate` gives the primary metric's difference
(as current − as reference) on those rows. Its opposite is what following the present
costs on the old rows:

  - under a covariate shift the flag explains nothing the features do not, the two
    predictions agree and the cost is zero within noise;
  - under a relationship change the model uses the flag where the sides disagree, and the
    cost is what the change takes from a model of the present on the old rows.

Why a pooled model with a side flag rather than one model per side: a model fitted on
current rows alone also loses on reference rows where current rows are scarce (it
extrapolates), which is a covariate shift, not a change of relationship; the pooled
model has seen both sides' rows, so the flag carries only what the features cannot.

Where the two sides do not overlap, nothing can tell the two apart: a feature that
separates them (a year, a date, a region the split was made on) stands in for the flag,
the pooled model splits on it instead, flipping the flag changes nothing and the cost
reads 0 whatever happened (the Auto MPG data with its `year` column: the old forest at R²
0.14 on current rows kept against a challenger at 0.73, for losing 0.65 on 1970-76 cars).
So the overlap is measured too: a classifier of the side from the features alone (the
same boosted trees, fitted on the pooled training rows) gives each `reference_test` row
the odds that a row like it is current, hence the density ratio w = p_current / p_reference
there, and the overlap is the mean of min(1, w) over those rows: the overlap coefficient
of the two sides' feature distributions, the share of the reference rows that lie where
the present's rows also lie (1 with no covariate shift, 0 when a feature separates the
sides). Below OVERLAP_FLOOR the reference rows lie where the present does not go: their
targets cannot tell a change of relationship from a shift of the features, and whatever
a challenger does there says nothing of the present, so the reference check does not hold
it against a challenger (auto tolerance only; `promotion.decide`). The gate then judges
the challenger on current_test alone, as it judges it where the relationship changed.

When the cost is above 0 at the gate's confidence (its lower bound), the relationship
changed, and the gate judges the challenger's loss on reference_test beyond that cost,
resample by resample on the same draws (`gate.beyond_change`): what it forgot beyond what
the present itself contradicts. When it did not change, nothing is taken out and the
reference check is as strict as before.

Chosen on the generator's scenarios (`relationship`, `covariates`, `full`, `half`,
`quarter`, `bundled`); shown on the public ones (`wage`, `weather`) and on a data set no
other benchmark uses (`cars`): benchmarks/bench_relationship.py. The overlap floor was
set after the bank: every scenario of it overlaps by 0.34 or more (`small` 0.34-0.37,
`full` and `covariates` 0.49-0.51, `relationship` 0.87-0.89), and every split made on a
column that stays a feature (Auto MPG by `year`, ISLR Hitters by `League`, HMDA by
`hirat`, Ecdat Wages by survey wave) by 0.00; any floor between gives the same verdicts, 0.1 is
"fewer than one reference row in ten lies where the present goes"; `cars-year` in
bench_relationship.py shows it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mlcycle.monitoring.gate import Interval, paired_bootstrap

log = logging.getLogger(__name__)

SIDE = "__side_is_current__"
# Training rows drawn per side at most: the fit stays within seconds on a million rows,
# and 25,000 a side measure a change of relationship as well as all of them.
MAX_ROWS_PER_SIDE = 25_000
# Below this overlap the reference rows lie where the present does not go (module docstring).
OVERLAP_FLOOR = 0.1


@dataclass(frozen=True)
class Evidence:
    """The cost of following the present on `reference_test` (metric units, > 0 = lost),
    its bounds, and what the gate excuses of it."""

    metric: str
    cost: float
    low: float
    high: float
    confidence: float
    rows: int
    interval: Interval
    # The share of reference_test rows lying where current rows also lie (module docstring).
    overlap: float = 1.0
    # Features whose values alone tell the two training sides apart (`separating`).
    separated_by: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """The cost is above 0 at the gate's confidence (its lower bound; the point
        estimate for the point rule)."""
        return self.low > 0

    @property
    def apart(self) -> bool:
        """The reference rows lie where the present does not go (overlap below
        OVERLAP_FLOOR): the reference check cannot speak for the present."""
        return self.overlap < OVERLAP_FLOOR

    @property
    def excused(self) -> float:
        """What the reference check does not hold against a challenger: the cost, when the
        relationship changed; 0 when it held."""
        return self.cost if self.changed else 0.0

    def text(self) -> str:
        if self.confidence:
            bounds = f", {self.confidence * 100:.4g}% bounds {self.low:+.4f}..{self.high:+.4f}"
        else:
            bounds = ""
        alone = ""
        if self.separated_by:
            alone = f" ({', '.join(self.separated_by)} alone: no value shared)"
        return (
            f"{self.metric} cost {self.cost:+.4f} on {self.rows} reference_test rows{bounds}; "
            f"overlap of the two sides' features {self.overlap:.2f}{alone}"
        )

    def metrics(self) -> dict[str, float]:
        return {
            "relationship_cost": self.cost,
            "relationship_cost_ci_low": self.low,
            "relationship_cost_ci_high": self.high,
            "reference_excused": self.excused,
            "reference_overlap": self.overlap,
        }


def side_frame(frame: pd.DataFrame, schema, side: int) -> pd.DataFrame:
    """The features as the side model reads them: categories as pandas categories (the
    model splits on them natively), and the side flag."""
    features = frame[schema.features].copy()
    for column in schema.categorical:
        features[column] = _categories(features[column])
    for column in schema.numeric:
        features[column] = pd.to_numeric(features[column], errors="coerce").astype(float)
    features[SIDE] = float(side)
    return features


def _pooled(schema, reference: pd.DataFrame, current: pd.DataFrame, seed: int):
    rng = np.random.default_rng(seed)
    parts = []
    for side, frame in ((0, reference), (1, current)):
        if len(frame) > MAX_ROWS_PER_SIDE:
            frame = frame.iloc[np.sort(rng.choice(len(frame), MAX_ROWS_PER_SIDE, replace=False))]
        parts.append((side_frame(frame, schema, side), frame[schema.target]))
    x = pd.concat([p[0] for p in parts], ignore_index=True)
    y = pd.concat([p[1] for p in parts], ignore_index=True)
    # One category set for both sides, so a side's categories mean the same codes.
    for column in schema.categorical:
        x[column] = _categories(x[column])
    return x, y


def _categories(values: pd.Series) -> pd.Series:
    """Strings as categories, missing values as the category dtype's own missing code
    (pandas' NA inside the categories breaks the model's encoder)."""
    values = values.astype(object)
    return values.where(values.isna(), values.astype(str)).astype("category")


def side_model(task: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    # Early stopping on a slice of the pooled rows keeps the flag from fitting noise.
    return kind(
        categorical_features="from_dtype",
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=20,
        max_iter=300,
        random_state=seed,
    )


def measure(
    schema,
    frames: dict[str, pd.DataFrame],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    resample_seed: int = 0,
) -> Evidence | None:
    """The cost of following the present on reference_test, or None when it cannot be
    measured (a side without training rows, a class seen on one side only, or too few
    rows to fit). `n_resamples` and `resample_seed` must be the gate's own, so both
    resample the same reference_test rows (`gate.beyond_change` pairs them)."""
    reference, current = frames["reference_train"], frames["current_train"]
    test = frames["reference_test"]
    if min(len(reference), len(current)) < 10 or len(test) < 2:
        log.info("relationship not measured: too few rows")
        return None
    x, y = _pooled(schema, reference, current, seed)
    model = side_model(schema.task, seed)
    # One OpenMP thread: on two shared cores the boosted trees' threads stall each other
    # (a fit of seconds took 7-24 s under load, measured for the hgb family).
    with threadpool_limits(1, user_api="openmp"):
        try:
            model.fit(x, y)
        except ValueError as exc:
            log.warning("relationship not measured: %s", exc)
            return None
        as_reference = _predict(model, schema, x, test, side=0)
        as_current = _predict(model, schema, x, test, side=1)
        shared = overlap(schema, x, test, seed)
    interval = paired_bootstrap(
        schema.task,
        test[schema.target].to_numpy(),
        as_reference,
        as_current,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=resample_seed,
    )
    # interval = metric(as current) - metric(as reference); the cost is its opposite.
    return Evidence(
        metric=interval.metric,
        cost=-interval.delta,
        low=-interval.high,
        high=-interval.low,
        confidence=interval.confidence,
        rows=interval.rows,
        interval=interval,
        overlap=shared,
        separated_by=separating(schema, reference, current),
    )


def separating(schema, reference: pd.DataFrame, current: pd.DataFrame) -> tuple[str, ...]:
    """The features that share no value between the two training sides (numbers: ranges
    that do not meet; categories: no category in common), so that each tells them apart
    alone: what the page names when the sides are apart (a year, the column of the split)."""
    found = []
    for column in schema.features:
        old, new = reference[column].dropna(), current[column].dropna()
        if old.empty or new.empty:
            continue
        if column in schema.numeric:
            old, new = pd.to_numeric(old, errors="coerce"), pd.to_numeric(new, errors="coerce")
            if old.max() < new.min() or new.max() < old.min():
                found.append(column)
        elif not set(old.astype(str)) & set(new.astype(str)):
            found.append(column)
    return tuple(found)


def overlap(schema, pooled: pd.DataFrame, test: pd.DataFrame, seed: int) -> float:
    """The mean over `test` (reference rows) of min(1, p_current / p_reference), the density
    ratio read off a classifier of the side fitted on the pooled rows' features (the module
    docstring says why). 1.0 when the classifier cannot be fitted (the check stays)."""
    side = pooled[SIDE].to_numpy()
    current = int(side.sum())
    if not 0 < current < len(side):
        return 1.0
    model = side_model("classification", seed)
    try:
        model.fit(pooled.drop(columns=[SIDE]), side.astype(int))
    except ValueError as exc:
        log.warning("overlap not measured: %s", exc)
        return 1.0
    rows = _predict(model, schema, pooled, test, side=0, proba=True)
    p = np.clip(rows[:, 1], 1e-9, 1 - 1e-9)
    # The classifier's odds carry the sides' sizes: divide them out.
    ratio = p / (1 - p) * (len(side) - current) / current
    return float(np.minimum(1.0, ratio).mean())


def _predict(
    model, schema, pooled: pd.DataFrame, frame: pd.DataFrame, side: int, proba: bool = False
) -> np.ndarray:
    """The model's answers on `frame` read as the pooled rows were; `proba`: the side
    classifier's, which reads the features without the flag."""
    x = side_frame(frame, schema, side)
    for column in schema.categorical:
        x[column] = pd.Categorical(x[column], categories=pooled[column].cat.categories)
    if proba:
        return model.predict_proba(x.drop(columns=[SIDE]))
    return model.predict(x)
