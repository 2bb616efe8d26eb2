"""The score step: batch predictions of a registered model on a CSV file.

Reads the model (`models:/NAME@champion` unless told; an alias is resolved to its
version first, and that version is what is loaded and recorded), its etl run (found
through the tag `mlcycle.etl_run` of the version or of the run that logged the model:
the columns' types, the classes, and `drop_columns`, the identifiers kept in the
output), and the input CSV, chunk by chunk (`mlcycle.models.scoring`). Writes one Parquet file
(`prediction_id`, identifiers, `row`, `prediction`, `proba_<class>`) and appends the
batch to the model's inference log (`mlcycle.ingest.inference`: this run's partition, tag
`mlcycle.inference_table`); records in the active run the
model URI, name, version and id (tags), the input file as an MLflow dataset, row counts,
throughput and a summary of the predictions (metrics), and the output path and the
digest of what was written there (tags). The output is claimed by a lock beside it
(`mlcycle.models.outputs`): a second run writing the same file is refused.

With engine=spark the same run is recorded, the rows read and scored by Spark
(`mlcycle.scaleout.spark_session`, `mlcycle.scaleout.spark_scoring`): a CSV or Parquet
file or folder of parts in, a Parquet folder out (and the log's partition), the model
applied by `mlflow.pyfunc.spark_udf`."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest import inference
from mlcycle.ingest.data import Schema, parse_columns
from mlcycle.ingest.datasets import DATASETS_DIR
from mlcycle.lifecycle import registry, workflow
from mlcycle.models import outputs, scoring
from mlcycle.models.predictors import inputs_for, predictor_for
from mlcycle.scaleout import spark_reading, spark_scoring, spark_session, spark_udf
from mlcycle.steps.params.score import ScoreParams, input_path

log = logging.getLogger(__name__)

ETL_RUN_TAG = "mlcycle.etl_run"
OUTPUT_DIGEST_TAG = "mlcycle.output_digest"


@dataclass
class Model:
    """The model a batch is scored with, and what its etl run says about its data."""

    uri: str  # as asked
    loaded: str  # what was loaded: models:/NAME/VERSION for an alias
    version: ModelVersion | None
    pyfunc: object
    etl_run: str | None
    schema: Schema | None
    drop_columns: list[str]


# ------------------------------------------------------------------------------ the model


def load_model(params: ScoreParams) -> Model:
    """Resolve the URI (an alias to the version it names now), load it, find its etl run."""
    uri = params.model_uri or registry.alias_uri(params.model_name, config.CHAMPION)
    if not params.model_uri and not registry.version_for_alias(params.model_name, config.CHAMPION):
        raise MlcycleError(
            f"{params.model_name} has no champion yet: train one first "
            "(mlflow run . -e main), or pass model_uri"
        )
    version = registry.resolve_version(uri)
    # Pinned: a promotion while the file is scored must not change the model half-way.
    loaded = f"models:/{version.name}/{version.version}" if version else uri
    pyfunc = registry.load_pyfunc(loaded)
    etl_run = _etl_run_of(version, pyfunc)
    schema, drop_columns = _etl_facts(etl_run)
    return Model(uri, loaded, version, pyfunc, etl_run, schema, drop_columns)


def _etl_run_of(version: ModelVersion | None, pyfunc) -> str | None:
    if version is not None and version.tags.get(ETL_RUN_TAG):
        return version.tags[ETL_RUN_TAG]
    run_id = getattr(pyfunc.metadata, "run_id", None)
    if not run_id:
        return None
    try:
        return mlflow.get_run(run_id).data.tags.get(ETL_RUN_TAG)
    except MlflowException:
        return None


def _etl_facts(etl_run: str | None) -> tuple[Schema | None, list[str]]:
    """The etl run's schema and drop_columns; the defaults when it cannot be read."""
    default = parse_columns(config.DEFAULT_DROP_COLUMNS)
    if not etl_run:
        log.info("no etl run recorded for the model: identifiers %s", default)
        return None, default
    try:
        run = mlflow.get_run(etl_run)
        schema = Schema.from_dict(
            mlflow.artifacts.load_dict(f"runs:/{etl_run}/{DATASETS_DIR}/schema.json")
        )
    except (MlflowException, OSError) as exc:
        log.warning("etl run %s cannot be read (%s): identifiers %s", etl_run, exc, default)
        return None, default
    given = run.data.params.get("drop_columns")
    return schema, parse_columns(given) if given is not None else list(schema.dropped)


# ------------------------------------------------------------------------------ the step


def log_score(
    model: Model, path: Path, scored: scoring.Scored, where: str = "", input_digest: str = ""
) -> None:
    """What the run records: which model, which file, how many rows, what came out; and
    the one line the log ends with (`where`: "on Spark " for that engine). input_digest:
    the input's workflow.path_digest when already computed."""
    version = model.version
    metadata = model.pyfunc.metadata
    mlflow.set_tags(
        {
            "mlcycle.model_uri": model.uri,
            "mlcycle.model_name": version.name if version else "",
            "mlcycle.model_version": version.version if version else "",
            "mlcycle.model_id": getattr(metadata, "model_id", None) or "",
            ETL_RUN_TAG: model.etl_run or "",
            "mlcycle.output": str(scored.output),
            # What was written, as written: a later run replacing the file changes it.
            OUTPUT_DIGEST_TAG: "sha256:" + workflow.path_digest(scored.output),
            inference.TABLE_TAG: str(scored.inference_table or ""),
        }
    )
    dataset = MetaDataset(
        resolve_dataset_source(str(path)),
        name=path.stem,
        digest=(input_digest or workflow.path_digest(path))[:16],
        schema=metadata.get_input_schema(),
    )
    mlflow.log_input(dataset, context="scoring")
    mlflow.log_metrics(
        {
            "input_rows": float(scored.input_rows),
            **scored.summary,
            "score_seconds": scored.seconds,
            "rows_per_second": scored.rows / scored.seconds if scored.seconds else 0.0,
        }
    )
    log.info(
        "scored %d rows %sin %.1f s (%.0f rows/s) -> %s",
        scored.rows,
        where,
        scored.seconds,
        scored.rows / scored.seconds if scored.seconds else 0.0,
        scored.output,
    )


def batch_of(
    model: Model, params: ScoreParams, inputs: scoring.Inputs, header: list[str]
) -> inference.Batch:
    """The batch this run logs: in the table of the model that scores (its registered
    name, else model_name), with the version that scored, stamped now; the features in
    the input's column order, so labelled rows come back in the original data's order."""
    version = model.version
    return inference.Batch(
        model_name=version.name if version else params.model_name,
        score_run=mlflow.active_run().info.run_id,
        model_version=str(version.version) if version else "",
        scored_at=datetime.now(UTC),
        features=[c for c in header if c in inputs.features],
    )


def execute_spark(params: ScoreParams) -> scoring.Scored:
    """The same step on Spark: input, output place and model checked before Spark starts,
    columns once Spark has read the header; recorded as the pandas engine records."""
    path = input_path(params.input)
    header = spark_reading.input_columns(path)
    base = config.output_root(config.launcher_folder())
    output = spark_scoring.output_folder(params.output, params.model_name, base)
    with outputs.claimed(output, outputs.stamped(params.output, output)) as output:
        spark_session.preflight(params.spark_master)
        model = load_model(params)
        prediction = spark_udf.prediction_of(model.pyfunc)
        inputs = inputs_for(model.pyfunc, model.uri, model.schema, model.drop_columns, header, path)
        with spark_session.session(params.spark_master) as spark:
            source = spark_reading.read_input(spark, path)
            log.info(
                "scoring %s on Spark (%s) with %s; identifiers kept: %s",
                path,
                params.spark_master,
                model.loaded,
                ", ".join(inputs.identifiers) or "none",
            )
            batch = batch_of(model, params, inputs, header)
            scored = spark_scoring.score_input(
                spark, source, inputs, model.loaded, prediction, output, path, batch
            )
        mlflow.set_tags({"mlcycle.engine": "spark", "mlcycle.spark_master": params.spark_master})
        log_score(model, path, scored, "on Spark ")
    return scored


def execute(params: ScoreParams, chunk_rows: int = scoring.CHUNK_ROWS) -> scoring.Scored:
    """Check the file and claim the output place, load the model, score, log: in the
    active run.

    A missing file, an output that cannot be written or that another run is writing
    (`mlcycle.models.outputs.claimed`) is found before the model loads;
    a missing column before any row is read; a bad value before anything is written."""
    if params.engine == "spark":
        return execute_spark(params)
    path = input_path(params.input)
    header = scoring.read_header(path)
    base = config.output_root(config.launcher_folder())
    output = outputs.output_path(params.output, params.model_name, base)
    claim = outputs.claimed(output, outputs.stamped(params.output, output))
    # The input's digest (a read of the whole file, hashed without the GIL) overlaps the
    # model's loading and the scoring instead of following them.
    with claim as output, ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(workflow.path_digest, path)
        model = load_model(params)
        inputs = inputs_for(model.pyfunc, model.uri, model.schema, model.drop_columns, header, path)
        log.info(
            "scoring %s with %s%s; identifiers kept: %s",
            path,
            model.uri,
            f" (version {model.version.version})" if model.version else "",
            ", ".join(inputs.identifiers) or "none",
        )
        predictor = predictor_for(model.pyfunc, model.uri, inputs.classes)
        batch = batch_of(model, params, inputs, header)
        scored = scoring.score_file(path, inputs, predictor, output, chunk_rows, batch)
        mlflow.set_tag("mlcycle.engine", "pandas")
        log_score(model, path, scored, input_digest=digest.result())
    return scored
