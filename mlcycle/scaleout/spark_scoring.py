"""Batch predictions on Spark: the input read by Spark, the model applied by
`mlflow.pyfunc.spark_udf`, a Parquet folder written by the executors. No MLflow runs here.

The input is a CSV or Parquet file, or a folder of parts (read in name order). A CSV's
number columns are read with etl's rules (`mlcycle.ingest.csvread`) written as Spark SQL,
each column's decimal mark decided over the whole input as etl decides it over a file
(`prepare`); text in a number is refused before the model runs, naming the column and
the row. The model gets its columns by signature name (`struct(*features)`), typed as
`mlcycle.models.scoring` types a chunk: numbers as doubles, categories as text with etl's
missing markers null, identifiers as text. The output holds the same columns as the
pandas engine's, `row` included, so sorted by `row` the two agree.

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

import logging
import os
import shutil
import time
from pathlib import Path

from mlcycle.errors import MlcycleError
from mlcycle.ingest import csvread
from mlcycle.ingest.inference import MODEL_VERSION, PREDICTION_ID, SCORED_AT, Batch, partition_dir
from mlcycle.models.outputs import output_path
from mlcycle.models.scoring import (
    PREDICTION,
    ROW,
    Inputs,
    Scored,
    missing_text,
    proba_column,
)
from mlcycle.scaleout.spark_reading import (
    COUNTS,
    SparkInput,
    prepare,
)
from mlcycle.scaleout.spark_session import spark_errors
from mlcycle.scaleout.spark_udf import Prediction, env_manager

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ output


def output_folder(output: str, model_name: str, base: Path) -> Path:
    """Where Spark writes: as `outputs.output_path`, but the .parquet name is a folder of
    parts, and an existing one is the output to replace (not a folder to write into)."""
    return output_path(output, model_name, base, parts=True)


# ----------------------------------------------------------------------------- scoring


def conformed(frame, inputs: Inputs) -> list:
    """The model's columns typed as `scoring.conform_chunk` types them, from a frame of
    `prepare`: numbers as doubles (an infinity missing), categories as text with etl's
    missing markers null."""
    from pyspark.sql import functions as F

    columns = []
    for col in inputs.features:
        value = F.col(f"`{col}`")
        if col in inputs.numeric:
            value = value.cast("double")
            value = F.when(F.abs(value) == float("inf"), None).otherwise(value)
        elif col in inputs.categorical:
            value = value.cast("string")
            value = F.when(value.isin(sorted(csvread.TEXT_MISSING)), None).otherwise(value)
        columns.append(value.alias(col))
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
    typed = conformed(frame, inputs)
    features = F.struct(*typed)
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
        by_name = dict(zip(inputs.features, typed, strict=True))
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
    source: SparkInput,
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
        with spark_errors(path):
            prepared = prepare(spark, source, inputs, path)
            input_rows = prepared.rows
            if not input_rows:
                raise MlcycleError(f"input file {path} has a header but no rows")
            if prepared.read_as_missing:
                log.info(
                    "%s: read as missing (as etl reads them): %s",
                    path,
                    missing_text(prepared.read_as_missing),
                )
            scored = predictions(spark, prepared.frame, inputs, model_uri, prediction, batch)
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
    summary |= {
        f"input_{kind}_as_missing": float(sum(prepared.read_as_missing.get(kind, {}).values()))
        for kind in COUNTS
    }
    return Scored(
        output,
        int(summary["output_rows"]),
        input_rows,
        seconds,
        summary,
        logged,
        prepared.read_as_missing,
    )


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
    from mlcycle.models.scoring_output import metric_safe

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
