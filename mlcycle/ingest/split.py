"""Split reference and current data into train and test, with no test row leaking.

A record that appears in a train split and again in a test split lets a model recall
instead of generalise (the public brief this project grew from admits to copied rows).
We split each frame with the seed, then drop from every test split the rows whose
features also appear in a train split, where those features are a copied record: every
row of the data with those features carries one and the same target.

Features that recur with different targets are different observations, not copies:
coarse features (an age in years, a few categories) repeat by nature. Dropping every test
row whose features a train split holds removed 87 % of current_test on AER's CPS1988 wage
survey (6 columns of education, experience and categories: now 1 row of 1,752) and all of
reference_test on COUNT's titanic (etl failed; now 2 of 132), and left test rows chosen
for being unusual. What it cannot tell: a small group of coarse rows that share one class
by chance looks like a copied record and still goes (carData's Arrests, 83 % released:
36 % of reference_test dropped, 64 % before)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema

log = logging.getLogger(__name__)

SPLIT_NAMES = ("reference_train", "reference_test", "current_train", "current_test")


@dataclass
class Splits:
    """The four frames every later step reads, each with features and target."""

    reference_train: pd.DataFrame
    reference_test: pd.DataFrame
    current_train: pd.DataFrame
    current_test: pd.DataFrame

    def items(self):
        return [(name, getattr(self, name)) for name in SPLIT_NAMES]


def split_frame(
    frame: pd.DataFrame, schema: Schema, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One seeded train/test split; stratified by class when every class can be."""
    if not 0 < test_size < 1:
        raise MlcycleError(f"parameter test_size must be between 0 and 1, got {test_size}")
    n_test = int(round(len(frame) * test_size))
    if n_test < 1 or len(frame) - n_test < 1:
        raise MlcycleError(
            f"{len(frame)} row(s) cannot be split with test_size={test_size}: "
            "each of train and test needs at least one row"
        )
    stratify = None
    if schema.task == "classification":
        counts = frame[schema.target].value_counts()
        if counts.min() >= 2 and n_test >= len(counts):
            stratify = frame[schema.target]
        else:
            log.warning("some class has fewer than 2 rows: split without stratification")
    # Imported here: the splits' readers (score, through datasets) never split, and
    # scikit-learn's model selection costs ~1.5 s to import (measured on 2 cores).
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=stratify)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def row_keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A hash per row of the given columns; equal rows (missing values included) hash equal."""
    return pd.util.hash_pandas_object(frame[columns], index=False)


def observed_apart(splits: Splits, features: list[str], target: str) -> set:
    """Keys (`row_keys` of the features) of feature rows that carry more than one target
    somewhere in the four splits: different observations, never a copied record."""
    pooled = pd.concat([frame[[*features, target]] for _, frame in splits.items()])
    keys = pd.DataFrame(
        {"x": row_keys(pooled, features), "xy": row_keys(pooled, [*features, target])}
    )
    targets = keys.groupby("x")["xy"].nunique()
    return set(targets.index[targets > 1])


def remove_leaks(splits: Splits, features: list[str], target: str) -> tuple[Splits, dict[str, int]]:
    """Drop test rows whose features also appear in any train split, unless those features
    carry different targets in the data (`observed_apart`: not a copied record)."""
    train_keys = set(row_keys(splits.reference_train, features)) | set(
        row_keys(splits.current_train, features)
    )
    natural = observed_apart(splits, features, target)
    removed = {}
    for name in ("reference_test", "current_test"):
        test = getattr(splits, name)
        keys = row_keys(test, features)
        seen = keys.isin(train_keys)
        leaked = (seen & ~keys.isin(natural)).to_numpy()
        removed[name] = int(leaked.sum())
        if leaked.any():
            log.info(
                "%s: removed %d row(s) whose features and target also appear in a train split",
                name,
                removed[name],
            )
        kept = int(seen.sum()) - removed[name]
        if kept:
            log.info(
                "%s: kept %d row(s) whose features a train split holds with another target "
                "too (coarse features repeat: different observations, not copies)",
                name,
                kept,
            )
        setattr(splits, name, test.loc[~leaked].reset_index(drop=True))
        if getattr(splits, name).empty:
            raise MlcycleError(f"{name} is empty once rows seen in training are removed")
    return splits, removed


def make_splits(
    reference: pd.DataFrame, current: pd.DataFrame, schema: Schema, test_size: float, seed: int
) -> tuple[Splits, dict[str, int]]:
    """Split both frames with the same seed, then remove leaked test rows."""
    ref_train, ref_test = split_frame(reference, schema, test_size, seed)
    cur_train, cur_test = split_frame(current, schema, test_size, seed)
    splits = Splits(ref_train, ref_test, cur_train, cur_test)
    return remove_leaks(splits, schema.features, schema.target)
