"""Batch predictions of a CSV, chunk by chunk, into one Parquet file: no MLflow runs here.

A file is read `CHUNK_ROWS` rows at a time (pandas' chunked reader, only the columns the
model and the output need), each chunk is given the model's types the way etl gave them
to the training rows (`conform_chunk`), predicted, and appended to a Parquet file as one
row group, so memory stays what one chunk needs whatever the file's length. The output
holds `prediction_id` (`<score run id>-<row>`, when scored for a run), the identifiers
found in the file, `row` (the input row's 0-based position), the prediction and, for a
classifier, one `proba_<class>` column per class: one output row per input row, in
order. The same chunk, with the features as conformed, is appended to the batch's
partition of the inference log (`mlcycle.ingest.inference`) in the same pass.

Nothing is written where the output goes until every row has been scored: the chunks go
to a hidden file beside it, moved into place at the end and removed on any error, so a
row the model cannot read (text in a number, a line the CSV parser refuses) leaves no
output behind. A missing column is found from the header, before any row is read."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from mlcycle.errors import MlcycleError
from mlcycle.ingest import csvchunks
from mlcycle.ingest.inference import PREDICTION_ID, Batch, PartitionWriter
from mlcycle.models.outputs import writable_ancestor
from mlcycle.models.progress import Progress, estimate_rows
from mlcycle.models.scoring_output import (
    PREDICTION,
    ROW,
    Summary,
    arrow_schema,
    output_frame,
    proba_column,
    write_chunk,
)

log = logging.getLogger(__name__)

# Rows per chunk. Measured scoring 1M loan rows with the network on a busy 2-core machine:
# 10k to 100k rows a chunk all took 6.5-7.8 s (noise), peak RSS growing ~60 MB a doubling
# over a ~850 MB start; 50k makes few calls of the model (each has a fixed cost).
CHUNK_ROWS = 50_000


@dataclass
class Inputs:
    """What the model reads from the file, and what the output keeps of it."""

    features: list[str]  # the model's input columns, in its signature's order
    numeric: list[str]  # converted to float64; text there is an error
    categorical: list[str]  # kept as text, missing as None
    identifiers: list[str] = field(default_factory=list)  # copied to the output
    classes: list | None = None  # a classifier's labels: one probability column each

    @property
    def columns(self) -> list[str]:
        """The file's columns the scoring reads (the rest is never parsed)."""
        return self.identifiers + [c for c in self.features if c not in self.identifiers]


@dataclass
class Predictor:
    """How to get predictions (and class probabilities) of a frame of conformed rows."""

    predict: Callable[[pd.DataFrame], np.ndarray]
    predict_proba: Callable[[pd.DataFrame], np.ndarray] | None = None
    # Both at once, when the model computes the labels from the probabilities anyway.
    both: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None


@dataclass
class Scored:
    """What scoring a file produced."""

    output: Path
    rows: int  # rows written
    input_rows: int  # rows read
    seconds: float
    summary: dict[str, float]
    inference_table: Path | None = None  # the batch's partition of the inference log
    # Placeholders and infinities read as missing: {"infinite": {column: count}, ...}
    read_as_missing: dict = field(default_factory=dict)


# ------------------------------------------------------------------ the file and its head


def read_header(path: Path) -> list[str]:
    """The file's column names, read as etl reads the file (`csvread`'s encoding and
    delimiter), refusing what is missing, a folder, binary or not CSV text."""
    return csvchunks.sniff(path).columns


def plan_inputs(
    header: list[str],
    features: list[str],
    numeric: list[str],
    categorical: list[str],
    identifiers: list[str],
    classes: list | None,
    path: Path,
) -> Inputs:
    """The columns to read: every feature must be in the file; identifiers are kept when
    present (a batch without names is still scored)."""
    missing = [c for c in features if c not in header]
    if missing:
        raise MlcycleError(
            f"input file {path} lacks column(s) the model reads: {', '.join(missing)} "
            f"(it has: {', '.join(header)})"
        )
    kept = [c for c in identifiers if c in header and c not in features]
    reserved = {ROW, PREDICTION, PREDICTION_ID} | {proba_column(c) for c in classes or []}
    clash = sorted(reserved & set(kept))
    if clash:
        raise MlcycleError(
            f"identifier column(s) {', '.join(clash)} of {path} would be overwritten by the "
            "output's own columns: rename them in the file"
        )
    return Inputs(
        features=list(features),
        numeric=[c for c in features if c in numeric],
        categorical=[c for c in features if c in categorical],
        identifiers=kept,
        classes=list(classes) if classes else None,
    )


def conform_chunk(
    chunk: pd.DataFrame,
    inputs: Inputs,
    path: Path,
    first_row: int,
    missing: dict | None = None,
    marks: csvchunks.FileMarks | None = None,
) -> pd.DataFrame:
    """The model's columns with the types etl gave the training rows: numbers as float64
    read with etl's rules (decimal mark, placeholders and infinities as missing; text
    there is an error naming the column, the row and the value), categories as strings
    with etl's missing markers as None. `missing` counts, per kind and column, the
    placeholders and infinities read as missing; `marks` gathers the decimal marks seen,
    for the whole file's decision."""
    out = {}
    for col in inputs.features:
        values = chunk[col]
        if col in inputs.numeric:
            text = values.astype(object).where(values.notna(), "").astype(str)
            read = csvchunks.numbers(text, f"input file {path}", first_row)
            if marks is not None:
                marks.add(col, read.marks)
            out[col] = read.values
            for kind, count in (("placeholders", read.placeholders), ("infinite", read.infinite)):
                if count and missing is not None:
                    counts = missing.setdefault(kind, {})
                    counts[col] = counts.get(col, 0) + count
        elif col in inputs.categorical:
            out[col] = csvchunks.text(values)
        else:
            out[col] = values
    return pd.DataFrame(out, index=chunk.index)


# ------------------------------------------------------------------------------ scoring


def missing_text(missing: dict) -> str:
    """'2 placeholder(s) in poids, 1 infinite value(s) in poids': each column, each count."""
    names = {"placeholders": "placeholder(s)", "infinite": "infinite value(s)"}
    return ", ".join(
        f"{count} {names[kind]} in {col}"
        for kind, counts in missing.items()
        for col, count in counts.items()
    )


def conformed_chunks(
    path: Path, inputs: Inputs, chunk_rows: int = CHUNK_ROWS, missing: dict | None = None
) -> Iterator[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """(first row, chunk as read, the model's columns typed) for each chunk, in order;
    after the last, the whole file's decimal marks are checked as etl checks them (a
    file etl refuses raises there, before the caller writes anything)."""
    dialect = csvchunks.sniff(path)
    marks = csvchunks.FileMarks(path, dialect)
    first_row = 0
    for chunk in csvchunks.read_chunks(path, dialect, inputs.columns, chunk_rows):
        yield first_row, chunk, conform_chunk(chunk, inputs, path, first_row, missing, marks)
        first_row += len(chunk)
    marks.check(chunk_rows)


def read_ahead(items: Iterator) -> Iterator:
    """The items, the next one produced in a thread while the caller works on this one:
    parsing the next chunk overlaps predicting this one (pandas' tokenizer, the trees and
    TensorFlow release the GIL). An error is raised where its item would have come."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


def score_file(
    path: Path,
    inputs: Inputs,
    predictor: Predictor,
    output: Path,
    chunk_rows: int = CHUNK_ROWS,
    batch: Batch | None = None,
    progress: Progress | None = None,
) -> Scored:
    """Score every row of the file into output, all or nothing (see the module doc).
    Given a batch, each output row gets its prediction_id and each chunk is appended to
    the batch's partition of the inference log as it is written (no second pass).
    Progress is shown on stderr (`Progress`) unless another one is given."""
    folder = writable_ancestor(output)
    partial = folder / f".{output.name}.{os.getpid()}.partial"
    summary = Summary(inputs.classes)
    started = time.perf_counter()
    writer, read = None, 0
    logged = PartitionWriter(batch) if batch else None
    score_run = batch.score_run if batch else None
    missing: dict = {}
    chunks = conformed_chunks(path, inputs, chunk_rows, missing)
    if progress is None:
        progress = Progress(*estimate_rows(path), chunk_rows)
    # One BLAS thread while the reader thread parses the next chunk on the other core: a
    # network's matrix products on two threads spun against the reader (1M rows, 2 cores:
    # scoring 4.0 -> 3.1 s, benchmarks/RESULTS.md). The trees' threads are not BLAS's.
    blas = threadpool_limits(limits=1, user_api="blas")
    # A chunk is written (the output's row group, the log's) in a thread while the next
    # one is predicted; one write in flight, waited for before the next is handed over,
    # so the row groups keep their order and a failed write stops the loop there.
    writing, pending = ThreadPoolExecutor(max_workers=1), None
    try:
        for first_row, chunk, features in read_ahead(chunks):
            read = first_row + len(chunk)
            if predictor.both is not None:
                predictions, proba = predictor.both(features)
            else:
                predictions = predictor.predict(features)
                proba = predictor.predict_proba(features) if predictor.predict_proba else None
            frame = output_frame(chunk, inputs, first_row, predictions, proba, score_run)
            if writer is None:
                schema = arrow_schema(frame, inputs)
                writer = pq.ParquetWriter(partial, schema)
            if pending is not None:
                pending.result()
            pending = writing.submit(write_chunk, writer, schema, frame, logged, features)
            summary.update(predictions, proba)
            progress.update(len(chunk))
        if writer is None:
            raise MlcycleError(f"input file {path} has a header but no rows")
        pending.result()
        writer.close()
        writer = None
        output.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, output)
        table = logged.commit() if logged is not None else None
    finally:
        writing.shutdown(wait=True)  # a write still running ends before its file closes
        blas.restore_original_limits()
        progress.close()
        if writer is not None:
            writer.close()
        if logged is not None:
            logged.abort()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    seconds = time.perf_counter() - started
    if missing:
        log.info("%s: read as missing (as etl reads them): %s", path, missing_text(missing))
    metrics = summary.metrics() | {
        f"input_{kind}_as_missing": float(sum(missing.get(kind, {}).values()))
        for kind in ("placeholders", "infinite")
    }
    return Scored(output, summary.rows, read, seconds, metrics, table, missing)
