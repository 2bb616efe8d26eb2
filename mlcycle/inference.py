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
TABLE_TAG = "mlcycle.inference_table"
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


def log_frame(batch: Batch, output: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """One chunk of the log: the output's columns (prediction_id, identifiers, row,
    prediction, probabilities) with the batch's facts and the features as read, in the
    order the module doc gives."""
    n = len(output)
    head = {
        PREDICTION_ID: output[PREDICTION_ID].to_numpy(),
        SCORED_AT: _instants(batch.scored_at, n).array,
        MODEL_VERSION: np.full(n, batch.model_version, dtype=object),
        "row": output["row"].to_numpy(),
    }
    rest = [c for c in output.columns if c not in (PREDICTION_ID, "row")]
    predicted = [c for c in rest if c == "prediction" or c.startswith("proba_")]
    identifiers = [c for c in rest if c not in predicted]
    columns = {**head}
    for c in identifiers:
        columns[c] = output[c].to_numpy()
    for c in batch.features:
        columns[c] = features[c].to_numpy()
    for c in predicted:
        columns[c] = output[c].to_numpy()
    return pd.DataFrame(columns)


def _instants(when: datetime, n: int) -> pd.Series:
    """n copies of a UTC instant as a datetime column (not n Timestamp objects)."""
    stamp = pd.Timestamp(when)  # a naive time is UTC, as everywhere in mlcycle
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    utc = stamp.tz_localize(None).as_unit("us")
    return pd.Series(np.full(n, utc.to_datetime64())).dt.tz_localize("UTC")


def arrow_schema(frame: pd.DataFrame, output_schema: pa.Schema, batch: Batch) -> pa.Schema:
    """The log's types: the output's where it has the column, UTC microseconds for the
    time, float64 or text for features (as conform_chunk types them)."""
    fields = []
    for name in frame.columns:
        if name in output_schema.names:
            fields.append(output_schema.field(name))
        elif name == SCORED_AT:
            fields.append(pa.field(name, pa.timestamp("us", tz="UTC")))
        elif name == MODEL_VERSION:
            fields.append(pa.field(name, pa.string()))
        elif frame[name].dtype == "float64":
            fields.append(pa.field(name, pa.float64()))
        elif frame[name].dtype == object:
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, pa.from_numpy_dtype(frame[name].dtype)))
    return pa.schema(fields)


class PartitionWriter:
    """Appends a batch's chunks to its partition, written under a hidden name and moved
    into place by `commit` (see the module doc); `abort` removes what was written."""

    def __init__(self, batch: Batch):
        self.batch = batch
        self.final = partition_dir(batch.model_name, batch.score_run)
        self.partial = self.final.parent / f".{self.final.name}.{os.getpid()}.partial"
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None

    def write(self, output: pd.DataFrame, output_schema: pa.Schema, features: pd.DataFrame):
        frame = log_frame(self.batch, output, features)
        if self.writer is None:
            self.schema = arrow_schema(frame, output_schema, self.batch)
            try:
                self.partial.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MlcycleError(
                    f"the inference log cannot be written in {self.partial.parent} "
                    f"({exc.strerror or exc}): set {ENV_DIR} to a writable folder"
                ) from exc
            self.writer = pq.ParquetWriter(self.partial / "part-0.parquet", self.schema)
        self.writer.write_table(pa.Table.from_pandas(frame, self.schema, preserve_index=False))

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


def read_batch(score_run: str, model_name: str | None = None, columns=None) -> pd.DataFrame:
    """The rows one score run logged, with a `score_run` column."""
    model_name = model_name or model_of(score_run)
    folder = partition_dir(model_name, score_run) if model_name else None
    if folder is None or not folder.is_dir():
        raise MlcycleError(
            f"score run {score_run} has no batch in the inference log {inference_dir()}"
        )
    return _read(folder, score_run, columns).to_pandas()


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
