"""The inference log: every batch `score` scored, kept as an append-only Parquet dataset
per model, so labels that arrive later (`feedback`) and a label-free monitor find the
rows again. No MLflow runs here.

Layout (hive partitioning, one folder per score run, readable as one table by pandas,
pyarrow, DuckDB and Spark):

    <inference dir>/<model_name>/score_run=<run id>/part-<n>.parquet

The inference dir is `.mlcycle/inference` in the project (the state folder of
`mlcycle.config`), or `MLCYCLE_INFERENCE_DIR`. Each row holds `prediction_id`
(`<score run id>-<row>`: unique across batches, the same in the score's output),
`scored_at` (UTC), `model_version`, `row`, the identifiers found in the input, the
model's features as read (typed as etl typed the training rows, before the model's own
preprocessing), `prediction` and, for a classifier, `proba_<class>`.

A partition is written chunk by chunk as the batch is scored, into a hidden folder
(`.score_run=<id>.partial`, which readers skip) moved into place once every row is
written: a failed score leaves no partial batch. Scoring the same file twice writes two
partitions, two batches."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlcycle import config
from mlcycle.errors import MlcycleError

log = logging.getLogger(__name__)

ENV_DIR = "MLCYCLE_INFERENCE_DIR"
PREDICTION_ID = "prediction_id"
SCORED_AT = "scored_at"
MODEL_VERSION = "model_version"
PARTITION = "score_run"
# The log's own columns beside the features (and feedback's beside the target): a
# feature or target of the same name would overwrite them, or be overwritten.
RESERVED_COLUMNS = (PREDICTION_ID, SCORED_AT, MODEL_VERSION, "row", PARTITION, "prediction")
TABLE_TAG = "mlcycle.inference_table"
PROBA_PREFIX = "proba_"  # the classifiers' probability columns, as score names them
_RUN_ID_LENGTH = 32  # MLflow run ids: 32 hex digits


def inference_dir() -> Path:
    """Where every model's inference table lives: MLCYCLE_INFERENCE_DIR, else the
    project's state folder (read when called: configuration has no import-time effect)."""
    given = os.environ.get(ENV_DIR, "").strip()
    return Path(given).expanduser().resolve() if given else config.STATE_DIR / "inference"


def table_dir(model_name: str) -> Path:
    return inference_dir() / model_name


def partition_dir(model_name: str, score_run: str) -> Path:
    return table_dir(model_name) / f"{PARTITION}={score_run}"


def prediction_ids(score_run: str, rows: np.ndarray) -> np.ndarray:
    """`<score run id>-<row>`: unique across batches since run ids are, and stable."""
    return np.char.add(f"{score_run}-", np.asarray(rows).astype(str)).astype(object)


def run_of(ids: pd.Series) -> pd.Series:
    """The score run named by each prediction id (None for an id of another shape)."""
    text = ids.astype("string")
    run = text.str.slice(0, _RUN_ID_LENGTH)
    shaped = text.str.slice(_RUN_ID_LENGTH, _RUN_ID_LENGTH + 1).eq("-") & run.str.fullmatch(
        r"[0-9a-f]+"
    ).fillna(False)
    keep = shaped.fillna(False).astype(bool).to_numpy()
    return pd.Series(np.where(keep, run.astype(object), None), index=ids.index, dtype=object)


# ----------------------------------------------------------------------------- writing


@dataclass
class Batch:
    """The batch a score run logs: which run, which model and version, when."""

    model_name: str
    score_run: str
    model_version: str
    scored_at: datetime  # UTC, one instant for the batch
    features: list[str] = field(default_factory=list)  # the model's columns, as read


def _instants(when: datetime, n: int) -> pa.Array:
    """n copies of a UTC instant, as Arrow timestamps."""
    stamp = pd.Timestamp(when)  # a naive time is UTC, as everywhere in mlcycle
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    micros = stamp.tz_localize(None).as_unit("us").to_datetime64()
    return pa.array(np.full(n, micros), pa.timestamp("us", tz="UTC"))


def feature_schema(features: pd.DataFrame, names: list[str]) -> pa.Schema:
    """The features' types, fixed by the first chunk: float64 or text, as conform_chunk
    types them; anything else as pandas gave it."""
    fields = []
    for name in names:
        kind = features[name].dtype
        if kind == "float64":
            fields.append(pa.field(name, pa.float64()))
        elif kind.kind == "O":
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, pa.from_numpy_dtype(kind)))
    return pa.schema(fields)


def log_table(batch: Batch, output: pa.Table, features: pa.Table) -> pa.Table:
    """One chunk of the log, in the order the module doc gives: the output's columns as
    already converted for the output file (prediction_id, row, identifiers, prediction,
    probabilities), the batch's facts, the features as read."""
    n = output.num_rows
    names = output.column_names
    predicted = [c for c in names if c == "prediction" or c.startswith("proba_")]
    identifiers = [c for c in names if c not in (PREDICTION_ID, "row", *predicted)]
    columns = {
        PREDICTION_ID: output[PREDICTION_ID],
        SCORED_AT: _instants(batch.scored_at, n),
        MODEL_VERSION: pa.repeat(pa.scalar(batch.model_version, pa.string()), n),
        "row": output["row"],
    }
    columns |= {c: output[c] for c in identifiers}
    columns |= {c: features[c] for c in batch.features}
    columns |= {c: output[c] for c in predicted}
    return pa.table(columns)


class PartitionWriter:
    """Appends a batch's chunks to its partition, written under a hidden name and moved
    into place by `commit` (see the module doc); `abort` removes what was written."""

    def __init__(self, batch: Batch):
        self.batch = batch
        self.final = partition_dir(batch.model_name, batch.score_run)
        self.partial = self.final.parent / f".{self.final.name}.{os.getpid()}.partial"
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.features: pa.Schema | None = None

    def write(self, output: pa.Table, features: pd.DataFrame) -> None:
        """Append one chunk: its output rows as written to the output file (Arrow, so
        they are converted once) and its features as conformed."""
        if self.writer is None:
            self.features = feature_schema(features, self.batch.features)
        chunk = pa.Table.from_pandas(
            features[self.batch.features], self.features, preserve_index=False
        )
        table = log_table(self.batch, output, chunk)
        if self.writer is None:
            try:
                self.partial.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MlcycleError(
                    f"the inference log cannot be written in {self.partial.parent} "
                    f"({exc.strerror or exc}): set {ENV_DIR} to a writable folder"
                ) from exc
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.partial / "part-0.parquet", self.schema)
        self.writer.write_table(table.cast(self.schema))

    def commit(self) -> Path:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.final.exists():  # the same run scored again (a retried run): replaced
            shutil.rmtree(self.final)
        os.replace(self.partial, self.final)
        return self.final

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        shutil.rmtree(self.partial, ignore_errors=True)
        # A failed first batch leaves no empty table folder behind either.
        with contextlib.suppress(OSError):
            self.partial.parent.rmdir()
            self.partial.parent.parent.rmdir()


# ----------------------------------------------------------------------------- reading


def partitions(model_name: str) -> dict[str, Path]:
    """{score run id: its folder} of the model's table (hidden, unfinished ones skipped)."""
    folder = table_dir(model_name)
    if not folder.is_dir():
        return {}
    prefix = f"{PARTITION}="
    return {
        p.name.removeprefix(prefix): p
        for p in sorted(folder.iterdir())
        if p.is_dir() and p.name.startswith(prefix)
    }


def model_of(score_run: str) -> str | None:
    """The model whose table holds this score run's batch, looked for in every table."""
    root = inference_dir()
    if not root.is_dir():
        return None
    for found in root.glob(f"*/{PARTITION}={score_run}"):
        if found.is_dir():
            return found.parent.name
    return None


def _read(folder: Path, score_run: str, columns: list[str] | None) -> pa.Table:
    parts = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(("_", ".")))
    tables = [pq.read_table(p, columns=columns) for p in parts]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    if table is None:
        raise MlcycleError(f"the inference log's batch {folder} holds no Parquet file")
    return table.append_column(PARTITION, pa.array([score_run] * len(table), pa.string()))


def score_run(run_id: str):
    """The score run with this id; one line when it is not one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.get_run(run_id)
    except MlflowException as exc:
        raise MlcycleError(f"parameter score_run: no run {run_id!r} in the tracking store") from exc
    if run.data.tags.get(config.STEP_TAG) != "score":
        raise MlcycleError(
            f"parameter score_run: run {run_id} is a "
            f"{run.data.tags.get(config.STEP_TAG) or 'non-mlcycle'} run, not a score run"
        )
    if run.info.status in ("FAILED", "KILLED"):  # a failed score leaves no batch behind
        raise MlcycleError(
            f"parameter score_run: score run {run_id} ended {run.info.status}, so it left no "
            "batch: score the batch again"
        )
    return run


def tagged_folder(score_run_id: str) -> Path:
    """The partition folder the score run tagged (absolute: found even when the log is
    read under another MLCYCLE_INFERENCE_DIR than the one it was written under)."""
    folder = score_run(score_run_id).data.tags.get(TABLE_TAG)
    if not folder:
        raise MlcycleError(
            f"parameter score_run: score run {score_run_id} has no tag {TABLE_TAG} "
            "(scored before the inference log existed): score the batch again"
        )
    path = Path(folder)
    if not path.is_dir() or not any(path.glob("*.parquet")):
        raise MlcycleError(
            f"parameter score_run: the inference table of score run {score_run_id} is missing: "
            f"{path}"
        )
    return path


def read_batch(score_run: str, model_name: str | None = None, columns=None) -> pd.DataFrame:
    """The rows one score run logged, in input order, with a `score_run` column: from the
    inference log, else from the folder the score run tagged."""
    model_name = model_name or model_of(score_run)
    folder = partition_dir(model_name, score_run) if model_name else None
    if folder is None or not folder.is_dir():
        try:
            folder = tagged_folder(score_run)
        except MlcycleError as exc:
            raise MlcycleError(
                f"score run {score_run} has no batch in the inference log {inference_dir()} ({exc})"
            ) from exc
    frame = _read(folder, score_run, columns).to_pandas()
    if "row" in frame.columns:
        frame = frame.sort_values("row", kind="stable", ignore_index=True)
    return frame


def read_table(model_name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Every batch the model scored, oldest first, with a `score_run` column. Batches
    whose columns differ (another version, new features) are stacked, missing as null."""
    found = partitions(model_name)
    if not found:
        raise MlcycleError(
            f"model {model_name} has no scored batch in the inference log {inference_dir()}: "
            "score one first (mlflow run . -e score)"
        )
    tables = [_read(folder, run, columns) for run, folder in found.items()]
    table = pa.concat_tables(tables, promote_options="permissive")
    frame = table.to_pandas()
    order = [c for c in (SCORED_AT, PARTITION, "row") if c in frame.columns]
    return frame.sort_values(order, kind="stable", ignore_index=True)
