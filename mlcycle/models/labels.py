"""Labels that arrive after scoring: read, checked and joined to the inference log
(`mlcycle.ingest.inference`), and the realised metrics of each batch they touch. No MLflow runs.

A labels file names its rows by `prediction_id` (what `score` wrote) or, when it has no
such column, by the identifier columns (the etl run's `drop_columns`), and carries the
target. The join keeps every label it can and counts, with one line each, the ones it
cannot: an empty label, a label of the wrong type (text for a regression target, a class
the model does not know), an id given twice in the file (the last one is kept), an id
the log does not know, an id of a row another model scored, and by identifiers a key
that names several rows of the latest batch holding it. A label for a row labelled by an
earlier feedback is kept and counted: the latest label wins.

Labels accepted are kept in a label store beside the inference log,
`<inference dir>/_labels/<model_name>/feedback_run=<run id>/part-0.parquet`
(`prediction_id`, `score_run`, the target, `labelled_at`), so a batch's realised metrics
are measured on every label known for it so far, whichever file brought it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlcycle.errors import MlcycleError
from mlcycle.ingest import csvread, inference
from mlcycle.ingest.inference import PARTITION, PREDICTION_ID, SCORED_AT
from mlcycle.monitoring.metrics import evaluate

LABELLED_AT = "labelled_at"
STORE = "_labels"
FEEDBACK_PARTITION = "feedback_run"
_MISSING = {m.lower() for m in csvread.TEXT_MISSING} | set(csvread.PLACEHOLDERS)


@dataclass
class Spec:
    """What the labels are checked against: the etl run of the model that scored."""

    target: str
    task: str  # regression / classification
    classes: list = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)
    now: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))


@dataclass
class Joined:
    """The scored rows that got a label (the log's columns, the target, labelled_at),
    what was counted, and one line per kind of label that was not kept."""

    rows: pd.DataFrame
    counts: dict[str, int]
    problems: list[str]
    key: str  # prediction_id, or the identifier columns joined by ', '


# ---------------------------------------------------------------------------- reading


def read_labels(path: Path) -> pd.DataFrame:
    """Every field as the text it is (the project's reader: encoding, delimiter), so a
    label of the wrong type is one label refused, not the file."""
    if not path.is_file():
        raise MlcycleError(f"labels file not found: {path}")
    where = f"labels file {path}"
    text, _ = csvread.decode(path.read_bytes(), where)
    frame = csvread.read_strings(text, csvread.sniff_delimiter(text, where), where)
    if frame.empty:
        raise MlcycleError(f"{where} has a header but no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _blank(values: pd.Series) -> pd.Series:
    """Empty or a missing-value marker; the values already stripped."""
    return values.isna() | values.eq("") | values.str.lower().isin(_MISSING)


def typed_labels(raw: pd.Series, spec: Spec) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(labels typed as the etl run typed the target, missing, wrong type)."""
    if spec.task == "regression":
        # Plain numbers through pandas' C parser; only the rest is looked at as text.
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        odd = ~np.isfinite(values.to_numpy())
        text = raw[odd].astype(object).where(raw[odd].notna(), "").astype(str).str.strip()
        blank = _blank(text).to_numpy()
        missing = np.zeros(len(raw), dtype=bool)
        missing[np.flatnonzero(odd)[blank]] = True
        # Spaces around, thousands grouped, or a decimal comma: as csvread reads a French
        # export (etl read '1 080,0' as 1080; refused here, every label above 999 was lost).
        text = csvread.ungroup(text)
        text = text.where(~text.str.fullmatch(r"[+-]?\d*,\d+"), text.str.replace(",", "."))
        values[np.flatnonzero(odd)] = pd.to_numeric(text.where(~blank), errors="coerce").to_numpy()
        wrong = ~missing & ~np.isfinite(values.to_numpy())
        return values.where(~wrong & ~missing), missing, wrong
    text = raw.astype(object).where(raw.notna(), "").astype(str).str.strip()
    missing = _blank(text).to_numpy()
    known = {str(c): c for c in spec.classes}
    whole = pd.to_numeric(text, errors="coerce")
    as_int = whole.notna() & (whole % 1 == 0)
    names = text.where(~as_int, whole.where(as_int).astype("Int64").astype(str))
    values = names.map(known)
    wrong = ~missing & values.isna().to_numpy()
    return values.where(~wrong), missing, wrong


# ------------------------------------------------------------------------------- joining


def _lines(where: pd.Index) -> str:
    """'line 5' or 'lines 5, 9, 12...' of the labels file (header is line 1)."""
    shown = ", ".join(str(int(i) + 2) for i in where[:3])
    return f"line{'s' if len(where) > 1 else ''} {shown}{'...' if len(where) > 3 else ''}"


def join_labels(
    labels: pd.DataFrame,
    table: pd.DataFrame,
    spec: Spec,
    seen: pd.Index | None = None,
    elsewhere: Callable[[str], str | None] | None = None,
    model_name: str = "",
) -> Joined:
    """Each label on the scored row it names (see the module doc). `seen`: prediction
    ids labelled by earlier feedback; `elsewhere(score_run)`: the model whose log holds
    that score run, if another's."""
    if spec.target not in labels.columns:
        raise MlcycleError(
            f"the labels file has no target column {spec.target!r} "
            f"(it has: {', '.join(labels.columns)})"
        )
    if PREDICTION_ID in labels.columns:
        keys = [PREDICTION_ID]
    else:
        keys = [c for c in spec.identifiers if c != PREDICTION_ID]
        absent = [c for c in keys if c not in labels.columns]
        if not keys or absent:
            raise MlcycleError(
                f"the labels file names its rows neither by {PREDICTION_ID} nor by the "
                f"identifier columns {', '.join(keys) or '(none)'}"
                + (f" (missing: {', '.join(absent)})" if absent else "")
            )
    counts = dict.fromkeys(
        ["labels_read", "missing_labels", "wrong_type_labels", "duplicate_labels"]
        + ["unknown_labels", "other_model_labels", "ambiguous_labels", "relabelled_labels"],
        0,
    )
    counts["labels_read"] = len(labels)
    problems: list[str] = []
    values, missing, wrong = typed_labels(labels[spec.target], spec)
    if missing.any():
        counts["missing_labels"] = int(missing.sum())
        problems.append(
            f"{int(missing.sum())} label(s) empty ({_lines(labels.index[missing])}): skipped"
        )
    if wrong.any():
        kind = "numbers" if spec.task == "regression" else f"classes of the model {spec.classes}"
        first = labels.index[wrong][0]
        counts["wrong_type_labels"] = int(wrong.sum())
        problems.append(
            f"{int(wrong.sum())} label(s) of {spec.target!r} are not {kind}, e.g. "
            f"{labels[spec.target][first]!r} ({_lines(labels.index[wrong])}): skipped"
        )
    kept = labels.loc[~missing & ~wrong, keys].copy()
    for key in keys:  # padded keys (a spreadsheet's export) name the same row
        text = kept[key].astype(str).str.strip()
        if keys == [PREDICTION_ID]:
            kept[key] = text.where(kept[key].notna())
        else:  # an empty identifier matches a missing one
            kept[key] = text.where(~_blank(text), None)
    kept[spec.target] = values[~missing & ~wrong]
    kept[LABELLED_AT] = _label_times(labels.loc[kept.index], spec.now, problems)
    repeated = kept.duplicated(keys, keep="last").to_numpy()
    if repeated.any():
        counts["duplicate_labels"] = int(repeated.sum())
        problems.append(
            f"{int(repeated.sum())} label(s) name a row named again later in the file "
            f"({_lines(kept.index[repeated])}): the last one kept"
        )
        kept = kept[~repeated]
    if keys == [PREDICTION_ID]:
        position = pd.Index(table[PREDICTION_ID]).get_indexer(kept[PREDICTION_ID])
        _unmatched_ids(kept[position < 0], counts, problems, elsewhere, model_name)
    else:
        position = _positions_by_identifiers(kept, table, keys, counts, problems)
    found = position >= 0
    rows = table.iloc[position[found]].reset_index(drop=True)
    rows[spec.target] = kept[spec.target].to_numpy()[found]
    rows[LABELLED_AT] = kept[LABELLED_AT].array[found]  # tz-aware, not Timestamp objects
    _early_labels(rows, kept.index[found], problems)
    if seen is not None and len(seen):
        again = rows[PREDICTION_ID].isin(seen).to_numpy()
        if again.any():
            counts["relabelled_labels"] = int(again.sum())
            problems.append(
                f"{int(again.sum())} label(s) for rows labelled by an earlier feedback, "
                f"e.g. {rows[PREDICTION_ID][again].iloc[0]}: the latest label wins"
            )
    counts["labels_joined"] = len(rows)
    return Joined(rows, counts, problems, ", ".join(keys))


def _label_times(labels: pd.DataFrame, now: pd.Timestamp, problems: list[str]) -> pd.Series:
    """labelled_at as given (UTC; a naive time is UTC), else now; a value given that is
    no time is taken as now too, in one line (silently, it made the label lag up)."""
    if LABELLED_AT not in labels.columns:
        return pd.Series(now, index=labels.index)
    raw = labels[LABELLED_AT]
    given = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
    text = raw.astype(object).where(raw.notna(), "").astype(str).str.strip()
    unreadable = (given.isna() & ~_blank(text)).to_numpy()
    if unreadable.any():
        problems.append(
            f"{int(unreadable.sum())} labelled_at value(s) are not times, e.g. "
            f"{text[unreadable].iloc[0]!r} ({_lines(labels.index[unreadable])}): taken as now"
        )
    return given.fillna(now)


def _early_labels(rows: pd.DataFrame, where: pd.Index, problems: list[str]) -> None:
    """One line for labels dated before their row was scored (kept as given): a truth
    known before the question was asked is a wrong clock or time zone, and it drags the
    batch's label lag below zero."""
    labelled = pd.to_datetime(rows[LABELLED_AT], utc=True)
    scored = pd.to_datetime(rows[SCORED_AT], utc=True)
    early = (labelled < scored).to_numpy()
    if early.any():
        first = int(np.flatnonzero(early)[0])
        problems.append(
            f"{int(early.sum())} label(s) dated before their row was scored "
            f"({_lines(where[early])}), e.g. labelled_at {labelled.iloc[first]} for a row "
            f"scored {scored.iloc[first]}: kept as given; check labelled_at's time zone "
            "(a time without one is read as UTC)"
        )


def _unmatched_ids(unmatched, counts, problems, elsewhere, model_name) -> None:
    if unmatched.empty:
        return
    runs = inference.run_of(unmatched[PREDICTION_ID])
    # One look per score run named, not per label (a million labels may name one run).
    owner = {r: elsewhere(r) if elsewhere else None for r in runs.dropna().unique()}
    owners = runs.map(owner)
    other = (owners.notna() & owners.ne(model_name)).to_numpy()
    if other.any():
        counts["other_model_labels"] = int(other.sum())
        problems.append(
            f"{int(other.sum())} label(s) for rows scored by another model "
            f"({owners[other].iloc[0]!r}, {_lines(unmatched.index[other])}): skipped"
        )
    if (~other).any():
        counts["unknown_labels"] = int((~other).sum())
        problems.append(
            f"{int((~other).sum())} label(s) name a prediction_id the inference log of "
            f"{model_name or 'the model'} does not hold, e.g. "
            f"{unmatched[PREDICTION_ID][~other].iloc[0]!r} ({_lines(unmatched.index[~other])})"
            ": skipped"
        )


def _positions_by_identifiers(kept, table, keys, counts, problems) -> np.ndarray:
    """The table position of each label's row: the latest batch holding its key; -1 for
    no row (unknown) or several rows of that batch (ambiguous)."""
    left = kept[keys].assign(_label=np.arange(len(kept)))
    right = table[keys + [SCORED_AT]].assign(_position=np.arange(len(table)))
    for key in keys:  # both sides as text, missing as missing
        left[key], right[key] = left[key].astype("string"), right[key].astype("string")
    pairs = left.merge(right, on=keys, how="inner")
    latest = pairs.groupby("_label")[SCORED_AT].transform("max")
    pairs = pairs[pairs[SCORED_AT] == latest]
    size = pairs.groupby("_label")["_position"].agg(["size", "first"])
    position = np.full(len(kept), -1, dtype="int64")
    single = size[size["size"] == 1]
    position[single.index.to_numpy()] = single["first"].to_numpy()
    several = size.index[size["size"] > 1].to_numpy()
    if len(several):
        counts["ambiguous_labels"] = len(several)
        problems.append(
            f"{len(several)} label(s) name by {', '.join(keys)} several rows of one batch "
            f"({_lines(kept.index[several])}): skipped, give their prediction_id"
        )
    unknown = np.setdiff1d(np.flatnonzero(position < 0), several)
    if len(unknown):
        counts["unknown_labels"] = len(unknown)
        problems.append(
            f"{len(unknown)} label(s) name by {', '.join(keys)} no scored row "
            f"({_lines(kept.index[unknown])}): skipped"
        )
    return position


# ------------------------------------------------------------------------------- metrics


def batch_metrics(rows: pd.DataFrame, batch_rows: int, spec: Spec) -> dict[str, float]:
    """Realised metrics of the model that scored the batch on its labelled rows, label
    coverage (share of the batch's rows labelled), labelled rows, and the median label
    lag in seconds (labelled_at - scored_at)."""
    out: dict[str, float] = {}
    if len(rows):
        proba = None
        columns = [f"proba_{c}" for c in spec.classes]
        if spec.task == "classification" and all(c in rows.columns for c in columns):
            proba = pd.DataFrame(rows[columns].to_numpy(), columns=spec.classes)
        truth, predicted = rows[spec.target], rows["prediction"]
        if spec.task == "classification":
            truth, predicted = truth.astype(str), predicted.astype(str)
            if proba is not None:
                proba.columns = [str(c) for c in spec.classes]
        realised = evaluate(spec.task, truth.to_numpy(), predicted.to_numpy(), proba)
        out |= {f"realised_{k}": float(v) for k, v in realised.items()}
        lag = pd.to_datetime(rows[LABELLED_AT], utc=True) - pd.to_datetime(
            rows[SCORED_AT], utc=True
        )
        out["label_lag_seconds"] = float(lag.dt.total_seconds().median())
    out["labelled_rows"] = float(len(rows))
    out["label_coverage"] = len(rows) / batch_rows if batch_rows else 0.0
    return out


# ---------------------------------------------------------------------------- the store


def store_dir(model_name: str) -> Path:
    return inference.inference_dir() / STORE / model_name


def read_store(model_name: str, target: str) -> pd.DataFrame:
    """Every label accepted so far for the model, one per prediction_id, the latest
    feedback's winning (feedback run folders sorted by the time they were written)."""
    folder = store_dir(model_name)
    columns = [PREDICTION_ID, PARTITION, target, LABELLED_AT]
    parts = sorted(folder.glob(f"{FEEDBACK_PARTITION}=*/part-0.parquet"), key=os.path.getmtime)
    if not parts:
        return pd.DataFrame(columns=columns)
    frames = [pq.read_table(p).to_pandas() for p in parts]
    frames = [f[[c for c in columns if c in f.columns]] for f in frames]
    stacked = pd.concat(frames, ignore_index=True)
    return stacked.drop_duplicates(PREDICTION_ID, keep="last", ignore_index=True)


def write_store(model_name: str, feedback_run: str, rows: pd.DataFrame, target: str) -> Path:
    """This feedback's accepted labels, as one partition of the store."""
    folder = store_dir(model_name) / f"{FEEDBACK_PARTITION}={feedback_run}"
    partial = folder.parent / f".{folder.name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    kept = rows[[PREDICTION_ID, PARTITION, target, LABELLED_AT]]
    pq.write_table(pa.Table.from_pandas(kept, preserve_index=False), partial / "part-0.parquet")
    os.replace(partial, folder)
    return folder
