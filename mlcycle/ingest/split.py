"""Split reference and current data into train and test, with no test row leaking.

A feature row that appears in a train split and again in a test split lets a model
recall instead of generalise (the public brief this project grew from admits to it).
We split each frame with the seed, then drop from every test split the rows whose
features also appear in any train split, and say how many."""

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


def remove_leaks(splits: Splits, features: list[str]) -> tuple[Splits, dict[str, int]]:
    """Drop test rows whose features also appear in any train split."""
    train_keys = set(row_keys(splits.reference_train, features)) | set(
        row_keys(splits.current_train, features)
    )
    removed = {}
    for name in ("reference_test", "current_test"):
        test = getattr(splits, name)
        leaked = row_keys(test, features).isin(train_keys).to_numpy()
        removed[name] = int(leaked.sum())
        if leaked.any():
            log.info(
                "%s: removed %d row(s) whose features also appear in a train split",
                name,
                removed[name],
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
    return remove_leaks(Splits(ref_train, ref_test, cur_train, cur_test), schema.features)
