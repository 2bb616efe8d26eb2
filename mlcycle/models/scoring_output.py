"""What score writes for each chunk: its output rows (`prediction_id`, identifiers, `row`,
the prediction, one `proba_<class>` per class), their Arrow types (fixed by the first
chunk), the chunk appended to the output file and the inference log, and the summary of
the predictions the run logs as metrics. `mlcycle.models.scoring` reads and predicts the
chunks; the Spark engine builds the same columns (`mlcycle.scaleout.spark_scoring`)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api import types as ptypes

from mlcycle.errors import MlcycleError
from mlcycle.ingest.inference import PREDICTION_ID, PROBA_PREFIX, PartitionWriter, prediction_ids

if TYPE_CHECKING:
    from mlcycle.models.scoring import Inputs

ROW = "row"
PREDICTION = "prediction"


def proba_column(label) -> str:
    return f"{PROBA_PREFIX}{label}"


def output_frame(
    chunk: pd.DataFrame,
    inputs: Inputs,
    first_row: int,
    predictions: np.ndarray,
    proba: np.ndarray | None,
    score_run: str | None = None,
) -> pd.DataFrame:
    """prediction_id (given the score run), identifiers, row, prediction, probabilities:
    one row per input row, in order."""
    n = len(chunk)
    if len(predictions) != n:
        raise MlcycleError(f"the model returned {len(predictions)} predictions for {n} rows")
    rows = np.arange(first_row, first_row + n, dtype="int64")
    out = {PREDICTION_ID: prediction_ids(score_run, rows)} if score_run else {}
    out |= {c: chunk[c].to_numpy(dtype=object, na_value=None) for c in inputs.identifiers}
    out[ROW] = rows
    out[PREDICTION] = np.asarray(predictions)
    if proba is not None:
        for j, label in enumerate(inputs.classes or []):
            out[proba_column(label)] = np.asarray(proba[:, j], dtype="float64")
    return pd.DataFrame(out)


def arrow_schema(frame: pd.DataFrame, inputs: Inputs) -> pa.Schema:
    """Fixed by the first chunk, so every row group of the file has the same types."""
    fields = [pa.field(PREDICTION_ID, pa.string())] if PREDICTION_ID in frame.columns else []
    fields += [pa.field(c, pa.string()) for c in inputs.identifiers]
    fields.append(pa.field(ROW, pa.int64()))
    fields.append(pa.field(PREDICTION, _arrow_type(frame[PREDICTION])))
    fields += [pa.field(c, pa.float64()) for c in frame.columns if c.startswith(PROBA_PREFIX)]
    return pa.schema(fields)


def _arrow_type(values: pd.Series) -> pa.DataType:
    if ptypes.is_bool_dtype(values):
        return pa.bool_()
    if ptypes.is_integer_dtype(values):
        return pa.int64()
    if ptypes.is_float_dtype(values):
        return pa.float64()
    return pa.string()


def write_chunk(
    writer: pq.ParquetWriter,
    schema: pa.Schema,
    frame: pd.DataFrame,
    logged: PartitionWriter | None,
    features: pd.DataFrame,
) -> None:
    """One chunk's output rows appended to the output file and, with its features, to
    the inference log's partition (Arrow converted once for both)."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    writer.write_table(table)
    if logged is not None:
        logged.write(table, features)


class Summary:
    """A prediction summary accumulated chunk by chunk (metrics of the scoring run)."""

    def __init__(self, classes: list | None):
        self.classes = classes
        self.rows = 0
        self.missing = 0
        self.total = self.squares = 0.0
        self.low, self.high = math.inf, -math.inf
        self.counts: dict = {}
        self.proba_sums = np.zeros(len(classes or []))

    def update(self, predictions: np.ndarray, proba: np.ndarray | None) -> None:
        self.rows += len(predictions)
        if self.classes is None:
            values = np.asarray(predictions, dtype="float64")
            finite = values[np.isfinite(values)]
            self.missing += len(values) - len(finite)
            if len(finite):
                self.total += float(finite.sum())
                self.squares += float((finite**2).sum())
                self.low, self.high = min(self.low, finite.min()), max(self.high, finite.max())
        else:
            labels, counts = np.unique(np.asarray(predictions).astype(str), return_counts=True)
            for label, count in zip(labels, counts, strict=True):
                self.counts[label] = self.counts.get(label, 0) + int(count)
        if proba is not None:
            self.proba_sums += np.asarray(proba, dtype="float64").sum(axis=0)

    def metrics(self) -> dict[str, float]:
        out = {"output_rows": float(self.rows)}
        if self.classes is None:
            n = self.rows - self.missing
            out["prediction_missing"] = float(self.missing)
            if n:
                mean = self.total / n
                out["prediction_mean"] = mean
                out["prediction_std"] = math.sqrt(max(self.squares / n - mean**2, 0.0))
                out["prediction_min"], out["prediction_max"] = float(self.low), float(self.high)
            return out
        for label in self.classes:
            share = self.counts.get(str(label), 0) / self.rows if self.rows else 0.0
            out[f"prediction_share.{metric_safe(label)}"] = share
        if self.rows and self.proba_sums.any():
            for label, total in zip(self.classes, self.proba_sums, strict=True):
                out[f"proba_mean.{metric_safe(label)}"] = float(total / self.rows)
        return out


def metric_safe(label) -> str:
    """A class label as MLflow accepts it in a metric name."""
    return re.sub(r"[^\w\-. /]", "_", str(label)) or "_"
