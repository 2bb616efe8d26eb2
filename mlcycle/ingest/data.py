"""Read and validate the reference and current CSVs; infer the task and the schema.

Every mistake a user can make with a file raises `MlcycleError` with one message naming
the file, the column or the parameter."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest import csvread
from mlcycle.ingest.inference import PREDICTION_ID, RESERVED_COLUMNS

log = logging.getLogger(__name__)

TASKS = config.TASKS
# A numeric target with at most this many distinct values is taken for class labels.
MAX_CLASSES_FOR_NUMERIC = 10
# A text column whose values all differ (a customer or transaction id, a date written as
# text) is an identifier: one-hot encoded, each new row's value is one never seen, so it
# teaches nothing, and densely it costs rows x rows cells (100,000 training rows: ~50 GB,
# the process killed for memory with no message). From this many values on it is dropped.
IDENTIFIER_MIN_VALUES = 50


@dataclass
class Schema:
    """What the etl step learned about the data; saved as datasets/schema.json."""

    target: str
    task: str
    numeric: list[str]
    categorical: list[str]
    dropped: list[str] = field(default_factory=list)
    classes: list = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Schema:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def read_table(path: str | Path, role: str) -> csvread.Table:
    """Read one CSV as its spreadsheet wrote it (delimiter, decimal mark, encoding: see
    `mlcycle.ingest.csvread`), refusing what is missing, empty or not CSV text; one log line
    says how it was read."""
    path = Path(path)
    if path.is_dir():
        raise MlcycleError(f"{role} {path} is a folder: etl reads one CSV file; pass a file")
    if not path.is_file():
        raise MlcycleError(f"{role} file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MlcycleError(f"{role} file {path} cannot be read: {exc.strerror}") from exc
    where = f"{role} file {path}"
    text, encoding = csvread.decode(raw, where)
    table = csvread.read_table(text, encoding, where)
    if table.frame.empty:
        raise MlcycleError(f"{where} has a header but no rows")
    if len(table.frame.columns) < 2:
        raise MlcycleError(
            f"{where} has a single column {list(table.frame.columns)}: a target and at "
            "least one feature are needed (no comma, semicolon or tab separates fields)"
        )
    log.info("%s: %s", where, table.describe())
    return table


def read_csv(path: str | Path, role: str) -> pd.DataFrame:
    """The frame of `read_table`: numbers typed, infinities still ±inf."""
    return read_table(path, role).frame


def parse_columns(text: str | None) -> list[str]:
    """'nom, prenom' -> ['nom', 'prenom']; empty -> []."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def infer_task(target: pd.Series, task: str = "auto") -> str:
    """A non-numeric target, or a numeric one with few distinct values, is classification."""
    if task not in TASKS:
        raise MlcycleError(f"parameter task must be one of {', '.join(TASKS)}, got {task!r}")
    numeric = ptypes.is_numeric_dtype(target) and not ptypes.is_bool_dtype(target)
    if task == "regression":
        if not numeric:
            raise MlcycleError(
                f"target column {target.name!r} is not numeric "
                f"(e.g. {target.dropna().iloc[0]!r}), so it cannot be a regression target"
            )
        return task
    if task == "classification":
        return task
    if not numeric:
        return "classification"
    distinct = target.dropna().nunique()
    integral = bool((target.dropna() % 1 == 0).all())
    return "classification" if integral and distinct <= MAX_CLASSES_FOR_NUMERIC else "regression"


def build_schema(
    reference: pd.DataFrame, target: str, task: str, dropped: list[str], source: str = "reference"
) -> Schema:
    """Feature kinds come from the reference data: numbers are numeric, the rest categorical."""
    if target not in reference.columns:
        raise MlcycleError(
            f"target column {target!r} is not in the {source} file "
            f"(columns: {', '.join(map(str, reference.columns))})"
        )
    # prediction_id is named for the labelled rows that carry it (watch always names it)
    missing_drop = [c for c in dropped if c not in reference.columns and c != PREDICTION_ID]
    if missing_drop:
        log.warning("drop_columns not in the data, ignored: %s", ", ".join(missing_drop))
    dropped = [c for c in dropped if c in reference.columns and c != target]
    if PREDICTION_ID in reference.columns and PREDICTION_ID not in dropped:
        # feedback's labelled rows carry it; as a feature (unique per row) it taught
        # nothing, and the model then refused every new batch for lacking it.
        log.info("%s (the id score gave each row) is never a feature: dropped", PREDICTION_ID)
        dropped.append(PREDICTION_ID)
    features = [c for c in reference.columns if c != target and c not in dropped]
    identifiers = [c for c in features if _is_identifier(reference[c])]
    if identifiers:
        log.warning(
            "%s: every value differs in the %s file (an identifier, never a feature): "
            "dropped; list %s in drop_columns to say so",
            ", ".join(identifiers),
            source,
            "it" if len(identifiers) == 1 else "them",
        )
        dropped = [*dropped, *identifiers]
        features = [c for c in features if c not in identifiers]
    for column in [target, *features]:
        if column in RESERVED_COLUMNS:
            raise MlcycleError(
                f"column {column!r} of the {source} file has the name of a column score and "
                "the inference log keep for themselves (" + ", ".join(RESERVED_COLUMNS) + "): "
                f"rename it{'' if column == target else ', or list it in drop_columns'}"
            )
    if not features:
        raise MlcycleError(f"no feature columns left in the {source} file after dropping {dropped}")
    numeric = [c for c in features if _is_numeric(reference[c])]
    categorical = [c for c in features if c not in numeric]
    resolved = infer_task(reference[target], task)
    return Schema(
        target=target, task=resolved, numeric=numeric, categorical=categorical, dropped=dropped
    )


def _is_numeric(column: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(column) and not ptypes.is_bool_dtype(column)


def _is_identifier(column: pd.Series) -> bool:
    """Not numbers, IDENTIFIER_MIN_VALUES values or more, all different. Numbers kept as
    text (a typo among them) are not identifiers: the kinds check names them instead."""
    if _is_numeric(column):
        return False
    values = column.dropna()
    if len(values) < IDENTIFIER_MIN_VALUES or values.nunique() != len(values):
        return False
    return pd.to_numeric(values, errors="coerce").notna().mean() < 0.5


def check_kinds(
    frames: dict[str, pd.DataFrame], schema: Schema, paths: dict[str, str | Path]
) -> None:
    """Each column is numbers in both files or text in both. Read apart, the files can
    disagree (stray words in one, a column shifted in the other): one line names the
    column, both files and what holds the wrong kind of value."""
    reference, current = frames["reference"], frames["current"]
    for col in [*schema.features, schema.target]:
        if col not in current.columns or current[col].isna().all():
            continue  # conform names a missing column; a column of holes has no kind
        name = "target column" if col == schema.target else "column"
        ref_numeric, cur_numeric = _is_numeric(reference[col]), _is_numeric(current[col])
        if ref_numeric and not cur_numeric:
            values = current[col].dropna()
            words = values[~csvread.is_number(values)]
            raise MlcycleError(
                f"{name} {col!r} of the current file {paths['current']} should be numeric, "
                f"as in the reference file {paths['reference']}, but holds "
                f"{_examples(words)} ({len(words)} such values)"
            )
        if cur_numeric and not ref_numeric and reference[col].notna().any():
            values = reference[col].dropna()
            raise MlcycleError(
                f"{name} {col!r} of the current file {paths['current']} holds only numbers "
                f"(e.g. {current[col].dropna().iloc[0]!r}) but is text in the reference file "
                f"{paths['reference']} (e.g. {_examples(values[~csvread.is_number(values)])})"
            )


def _examples(values: pd.Series, n: int = 3) -> str:
    return ", ".join(repr(v) for v in pd.unique(values)[:n])


def conform(frame: pd.DataFrame, schema: Schema, role: str, path: str | Path) -> pd.DataFrame:
    """Check one frame against the schema and give it the schema's types.

    Numbers become float64 (so a served row may hold a missing value), infinities in a
    feature become missing (no model or drift test takes them), an infinite target is
    refused; categories become strings with missing values kept as missing."""
    missing = [c for c in schema.features if c not in frame.columns]
    if missing:
        raise MlcycleError(
            f"{role} file {path} is missing feature columns of the reference: {', '.join(missing)}"
        )
    if schema.target not in frame.columns:
        raise MlcycleError(f"target column {schema.target!r} is not in the {role} file {path}")
    out = frame[schema.features + [schema.target]].copy()
    for col in schema.numeric:
        converted = pd.to_numeric(out[col], errors="coerce")
        bad = converted.isna() & out[col].notna()
        if bad.any():
            raise MlcycleError(
                f"column {col!r} of the {role} file {path} should be numeric but holds "
                f"{out[col][bad].iloc[0]!r} ({int(bad.sum())} such values)"
            )
        out[col] = converted.astype("float64").replace([np.inf, -np.inf], np.nan)
    for col in schema.categorical:
        out[col] = out[col].astype("object").where(out[col].notna(), None)
        out[col] = out[col].map(lambda v: v if v is None else str(v))
    if schema.task == "regression":
        target = pd.to_numeric(out[schema.target], errors="coerce")
        bad = target.isna() & out[schema.target].notna()
        if bad.any():
            raise MlcycleError(
                f"target column {schema.target!r} of the {role} file {path} is not numeric "
                f"(e.g. {out[schema.target][bad].iloc[0]!r}), so it cannot be a regression target"
            )
        out[schema.target] = target.astype("float64")
    _refuse_infinite_target(out[schema.target], role, path)
    return out


def _refuse_infinite_target(target: pd.Series, role: str, path: str | Path) -> None:
    """An infinite target is a broken computation upstream, not a missing value: the
    rows it sits on would be dropped unseen, so the file is refused instead."""
    if not _is_numeric(target):
        return
    infinite = np.isinf(target.to_numpy(dtype="float64"))
    if infinite.any():
        raise MlcycleError(
            f"target column {target.name!r} of the {role} file {path} holds "
            f"{int(infinite.sum())} infinite value(s) (e.g. {target[infinite].iloc[0]}); "
            "a target must be a finite number, or left empty to drop its row"
        )


def drop_missing_target(frame: pd.DataFrame, target: str, role: str) -> tuple[pd.DataFrame, int]:
    """Rows with no target teach nothing and score nothing: remove them, say how many."""
    keep = frame[target].notna()
    removed = int((~keep).sum())
    if removed:
        log.info("%s: removed %d row(s) with a missing target %r", role, removed, target)
    if not keep.any():
        raise MlcycleError(f"every row of the {role} data has a missing target {target!r}")
    return frame.loc[keep].reset_index(drop=True), removed


def whole_labels(labels: pd.Series) -> pd.Series:
    """Class labels 0/1 read from a file with a hole come back as 0.0/1.0: once the holes
    are gone, whole numbers are integers again, so both files name a class the same way
    (else "1.0" and "1" read as two classes and as target drift)."""
    if pd.api.types.is_float_dtype(labels) and (labels == labels.round()).all():
        return labels.astype("int64")
    return labels


def check_classes(frame: pd.DataFrame, schema: Schema, role: str) -> None:
    """A classifier needs at least two classes to tell apart."""
    classes = frame[schema.target].dropna().unique()
    if len(classes) < 2:
        raise MlcycleError(
            f"classification target {schema.target!r} of the {role} data has a single class "
            f"({classes[0]!r}); at least two are needed"
        )
