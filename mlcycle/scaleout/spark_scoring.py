"""Batch predictions on Spark: the input read by Spark, the model applied by
`mlflow.pyfunc.spark_udf`, a Parquet folder written by the executors. No MLflow runs here.

The input is a CSV or Parquet file, or a folder of parts (read in name order). The model
gets its columns by signature name (`struct(*features)`), typed as `mlcycle.models.scoring`
types a chunk: numbers as doubles (text there fails the job, named like the pandas
engine names it), categories and identifiers as text. The output holds the same columns
as the pandas engine's, `row` included, so sorted by `row` the two agree.

`row` is the input row's position in the file (in the folder's name order), which Spark
does not keep: a file is read as splits, spread over partitions in an order of its own.
Each row is tagged with its split (file, byte offset) and `monotonically_increasing_id`,
which counts up within a partition, where a split's rows are consecutive and in file
order; one cheap first pass counts each split's rows and finds its first id, so a row's
position is its id plus the offset of its split in file order. Both passes must cut the
files alike, so the split size is pinned before the first (it otherwise follows the
number of cores, which grows while executors register).

The driver never collects rows: the counts per split, the summary of the predictions
and a handful of labels come back, aggregated by the executors."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from mlcycle.errors import MlcycleError
from mlcycle.ingest.inference import MODEL_VERSION, PREDICTION_ID, SCORED_AT, Batch, partition_dir
from mlcycle.models.outputs import SUFFIX, output_path
from mlcycle.models.scoring import (
    PREDICTION,
    ROW,
    Inputs,
    Scored,
    proba_column,
    read_header,
)
from mlcycle.scaleout.spark_udf import Prediction, env_manager

log = logging.getLogger(__name__)

_FILE, _START, _ID, _SHIFT = "__mlcycle_file", "__mlcycle_start", "__mlcycle_id", "__mlcycle_shift"

# Splits per core of the cluster when the input is planned (see with_positions).
SPLITS_PER_CORE = 4


# ------------------------------------------------------------------------------ output


def output_folder(output: str, model_name: str, base: Path) -> Path:
    """Where Spark writes: as `outputs.output_path`, but the .parquet name is a folder of
    parts, and an existing one is the output to replace (not a folder to write into)."""
    return output_path(output, model_name, base, parts=True)


# ------------------------------------------------------------------------------- input


def input_format(path: Path) -> str:
    """parquet when the file (or every part of the folder) is Parquet, else csv."""
    if not path.exists():
        raise MlcycleError(f"input file not found: {path}")
    parts = [path] if path.is_file() else _parts(path)
    if not parts:
        raise MlcycleError(f"input folder {path} holds no file to read")
    return "parquet" if all(p.suffix == SUFFIX for p in parts) else "csv"


def input_columns(path: Path) -> list[str]:
    """The input's column names, read on the driver before Spark starts (the first part
    of a folder), so a column the model needs is found missing at once."""
    first = path if path.is_file() else _parts(path)[0]
    if input_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(first).names)
        except (OSError, ValueError) as exc:
            raise MlcycleError(f"input file {first} cannot be read as Parquet: {exc}") from exc
    return read_header(first)


def _parts(folder: Path) -> list[Path]:
    """The files Spark reads in a folder (it skips names starting with '_' or '.')."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))


def read_input(spark, path: Path):
    """The input as a DataFrame of the files' own columns (CSV: text, header line)."""
    reader = spark.read
    with spark_errors(path):
        if input_format(path) == "parquet":
            return reader.parquet(path.as_uri())
        return reader.option("header", True).option("encoding", "UTF-8").csv(path.as_uri())


def with_positions(spark, frame):
    """frame (as read, straight from its files) with ROW, the 0-based position of each
    row in the input, and the number of rows (see the module doc)."""
    from pyspark.sql import functions as F

    # The split size follows the cores known when a scan is planned: pinned for both, at
    # SPLITS_PER_CORE splits a core, so a worker that registers after planning, or a core
    # that finishes its share first, still finds tasks to take (with one split a core, a
    # 152 MB file was read as 128 MB + 24 MB and a second worker added 7 %).
    cores = max(spark.sparkContext.defaultParallelism, 1)
    spark.conf.set("spark.sql.files.minPartitionNum", str(SPLITS_PER_CORE * cores))
    tagged = frame.select(
        "*",
        F.col("_metadata.file_path").alias(_FILE),
        F.col("_metadata.file_block_start").alias(_START),
        F.monotonically_increasing_id().alias(_ID),
    )
    splits = (
        tagged.groupBy(_FILE, _START)
        .agg(F.min(_ID).alias("first"), F.count(F.lit(1)).alias("rows"))
        .collect()
    )
    shifts, offset = [], 0
    for split in sorted(splits, key=lambda s: (s[_FILE], s[_START])):
        shifts.append((split[_FILE], split[_START], offset - split["first"]))
        offset += split["rows"]
    table = spark.createDataFrame(shifts, f"{_FILE} string, {_START} long, {_SHIFT} long")
    positioned = tagged.join(F.broadcast(table), [_FILE, _START]).withColumn(
        ROW, F.col(_ID) + F.col(_SHIFT)
    )
    return positioned.drop(_FILE, _START, _ID, _SHIFT), offset


# ----------------------------------------------------------------------------- scoring


def _conformed(frame, inputs: Inputs) -> list:
    """The model's columns typed as `scoring.conform_chunk` types them."""
    from pyspark.sql import functions as F

    columns = []
    for col in inputs.features:
        kind = "double" if col in inputs.numeric else None
        kind = "string" if col in inputs.categorical else kind
        value = F.col(f"`{col}`")
        columns.append((value.cast(kind) if kind else value).alias(col))
    return columns


def predictions(
    spark, frame, inputs: Inputs, model_uri: str, prediction: Prediction, batch: Batch | None = None
):
    """identifiers, row, prediction and proba_<class> columns, as the pandas engine's;
    given a batch, the inference log's columns too (prediction_id first, scored_at,
    model_version, the features as conformed), in the order `inference` writes them."""
    import mlflow
    from pyspark.sql import functions as F

    manager = env_manager()
    conformed = _conformed(frame, inputs)
    features = F.struct(*conformed)
    predict = mlflow.pyfunc.spark_udf(
        spark, model_uri, result_type=prediction.spark_type, env_manager=manager
    )
    columns = []
    if batch is not None:
        columns += [
            F.concat(F.lit(f"{batch.score_run}-"), F.col(ROW).cast("string")).alias(PREDICTION_ID),
            F.lit(batch.scored_at).alias(SCORED_AT),
            F.lit(batch.model_version).alias(MODEL_VERSION),
            F.col(ROW),
        ]
    columns += [F.col(f"`{c}`").cast("string").alias(c) for c in inputs.identifiers]
    if batch is not None:
        by_name = dict(zip(inputs.features, conformed, strict=True))
        columns += [by_name[c] for c in batch.features]
    else:
        columns.append(F.col(ROW))
    columns.append(predict(features).alias(PREDICTION))
    if inputs.classes and prediction.proba_classes:
        proba = mlflow.pyfunc.spark_udf(
            spark,
            model_uri,
            result_type="array<double>",
            env_manager=manager,
            params={"predict_method": "predict_proba"},
        )
        has = [str(c) for c in prediction.proba_classes]
        values = proba(features)
        columns += [
            values[has.index(str(label))].alias(proba_column(label)) for label in inputs.classes
        ]
    elif inputs.classes:
        log.warning(
            "%s does not answer predict_method=predict_proba: labels only on Spark", model_uri
        )
    return frame.select(*columns)


def score_input(
    spark,
    frame,
    inputs: Inputs,
    model_uri: str,
    prediction: Prediction,
    output: Path,
    path: Path,
    batch: Batch | None = None,
) -> Scored:
    """Score every row into the output folder, all or nothing: written beside it under a
    hidden name, summarized, then moved into place (an older output there replaced).

    Given a batch, the model runs once: the rows are written with the log's columns to
    the batch's partition of the inference log (hidden until the end, as the output),
    and the output is those rows' output columns read back."""
    partial = output.parent / f".{output.name}.{os.getpid()}.partial"
    logged = partition_dir(batch.model_name, batch.score_run) if batch else None
    log_partial = logged.parent / f".{logged.name}.{os.getpid()}.partial" if logged else None
    started = time.perf_counter()
    try:
        with spark_errors(path, frame, inputs):
            positioned, input_rows = with_positions(spark, frame)
            if not input_rows:
                raise MlcycleError(f"input file {path} has a header but no rows")
            scored = predictions(spark, positioned, inputs, model_uri, prediction, batch)
            output.parent.mkdir(parents=True, exist_ok=True)
            if log_partial is not None:
                # Read by pandas and pyarrow as the pandas engine's: UTC microseconds.
                spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
                log_partial.parent.mkdir(parents=True, exist_ok=True)
                # Not as_uri(): it escapes the '=' of the partition's name, which Spark
                # would keep as '%3D' in the folder it writes.
                log_uri = f"file://{log_partial}"
                scored.write.mode("overwrite").parquet(log_uri)
                kept = [PREDICTION_ID, *inputs.identifiers, ROW, PREDICTION]
                kept += [proba_column(c) for c in inputs.classes or []]
                written = spark.read.parquet(log_uri)
                scored = written.select(*[f"`{c}`" for c in kept if c in written.columns])
            scored.write.mode("overwrite").parquet(partial.as_uri())
            summary = summarize(spark.read.parquet(partial.as_uri()), inputs)
        _replace(partial, output)
        if log_partial is not None:
            _replace(log_partial, logged)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        if log_partial is not None:
            shutil.rmtree(log_partial, ignore_errors=True)
    seconds = time.perf_counter() - started
    return Scored(output, int(summary["output_rows"]), input_rows, seconds, summary, logged)


def _replace(partial: Path, output: Path) -> None:
    if output.is_dir():
        shutil.rmtree(output)
    elif output.exists():
        output.unlink()
    os.replace(partial, output)


def summarize(written, inputs: Inputs) -> dict[str, float]:
    """The metrics `scoring.Summary` gives, aggregated by the executors."""
    from pyspark.sql import functions as F

    value = F.col(PREDICTION)
    if not inputs.classes:
        finite = F.when(~F.isnan(value) & (F.abs(value) < float("inf")), value)
        row = written.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(finite).alias("finite"),
            F.avg(finite).alias("mean"),
            F.stddev_pop(finite).alias("std"),
            F.min(finite).alias("low"),
            F.max(finite).alias("high"),
        ).first()
        out = {"output_rows": float(row["rows"]), "prediction_missing": row["rows"] - row["finite"]}
        if row["finite"]:
            out |= {
                "prediction_mean": row["mean"],
                "prediction_std": row["std"],
                "prediction_min": row["low"],
                "prediction_max": row["high"],
            }
        return {k: float(v) for k, v in out.items()}
    from mlcycle.models.scoring import metric_safe

    counts = {str(r[0]): r[1] for r in written.groupBy(value.cast("string")).count().collect()}
    rows = sum(counts.values())
    out = {"output_rows": float(rows)}
    for label in inputs.classes:
        out[f"prediction_share.{metric_safe(label)}"] = counts.get(str(label), 0) / rows
    proba = [proba_column(c) for c in inputs.classes if proba_column(c) in written.columns]
    if proba and rows:
        means = written.agg(*[F.avg(c).alias(c) for c in proba]).first()
        for label in inputs.classes:
            out[f"proba_mean.{metric_safe(label)}"] = float(means[proba_column(label)])
    return out


# ------------------------------------------------------------------------------ errors


@contextlib.contextmanager
def spark_errors(path: Path, frame=None, inputs: Inputs | None = None) -> Iterator[None]:
    """A failed Spark job as one line: text in a number named by column, row and value
    (found by a second look at the input), a model's own error by its last line."""
    try:
        yield
    except Exception as exc:
        # Spark's own (pyspark.errors) or its JVM bridge's (py4j) errors; ours pass through.
        if not type(exc).__module__.startswith(("pyspark", "py4j")):
            raise
        text = str(exc)
        if "CAST_INVALID_INPUT" in text and frame is not None and inputs is not None:
            bad = _first_bad_number(frame, inputs, path)
            if bad:
                raise MlcycleError(bad) from None
        if "PATH_NOT_FOUND" in text:
            raise MlcycleError(f"input file not found: {path}") from None
        raise MlcycleError(f"Spark could not score {path}: {_one_line(text)}") from None


def _first_bad_number(frame, inputs: Inputs, path: Path) -> str | None:
    from pyspark.sql import functions as F

    for col in inputs.numeric:
        value = F.col(f"`{col}`")
        bad = frame.filter(value.isNotNull() & value.try_cast("double").isNull())
        first = bad.select(value.cast("string").alias("v")).first()
        if first is not None:
            return (
                f"column {col!r} of the input file {path} should be numeric but holds "
                f"{first['v']!r}; nothing was written"
            )
    return None


def _one_line(text: str) -> str:
    """The last 'SomeError: message' line of a Python worker's traceback, else the first
    line of Spark's message, shortened."""
    found = re.findall(r"^(?:\w+\.)*\w*(?:Error|Exception): .+$", text, flags=re.M)
    line = found[-1] if found else text.strip().splitlines()[0] if text.strip() else "failed"
    return line if len(line) <= 400 else line[:397] + "..."
