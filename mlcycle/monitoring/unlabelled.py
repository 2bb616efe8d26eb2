"""Monitoring a scored batch whose labels are not in yet (`monitor -P score_run=<id>`).

Reads the batch from the inference table of the score run (`mlcycle.ingest.inference`), the
champion (models:/NAME@champion unless told), and the champion's etl run (`etl_run` if
given, else the tag `mlcycle.etl_run` of its version, of the run that logged it, or of
the score run). Says what can be said without labels: feature drift and data quality of
the batch against the etl run's current rows (train and test: the newest labelled rows
the champion was judged on), the drift of the champion's predictions between the two,
and its performance estimated by `mlcycle.monitoring.estimation`, calibrated on the etl run's
current_test rows (held out from every model's training; the relationship the batch is
assumed to follow). `mlcycle.monitoring.batch_page` then writes `unlabelled.html` as
the page (report.html of the folder), Evidently's HTML, history.json, the metrics and
tags of the contract (`estimated_<metric>` with `_low`/`_high`, `reference_<metric>`,
`prediction_drift_score`, the drift counts, `batch_rows`; `mlcycle.monitor.labels=absent`)
and never moves an alias: without labels nothing can be promoted."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest import inference
from mlcycle.ingest.datasets import load_splits
from mlcycle.monitoring import batch_page, drift, estimation, history
from mlcycle.monitoring.evaluate import predict, predict_proba

log = logging.getLogger("mlcycle.monitor")

ETL_RUN_TAG = "mlcycle.etl_run"
CALIBRATION_SPLIT = "current_test"


# --- pure parts ----------------------------------------------------------------------


def batch_predictions(
    frame: pd.DataFrame, schema, scored_by: str | None, champion_version: str | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The champion's predictions (and class probabilities) as the score run stored them,
    when the champion is the version that scored the batch; (None, None) otherwise."""
    if scored_by is None or str(scored_by) != str(champion_version):
        return None, None
    if "prediction" not in frame.columns:
        return None, None
    if schema.task != "classification":
        return frame["prediction"].to_numpy(), None
    columns = [f"{inference.PROBA_PREFIX}{c}" for c in schema.classes]
    if not set(columns) <= set(frame.columns):
        return None, None
    return frame["prediction"].to_numpy(), frame[columns].to_numpy(dtype="float64")


# --- reading -------------------------------------------------------------------------


def check_features(frame: pd.DataFrame, schema, score_run: str) -> None:
    absent = [c for c in schema.features if c not in frame.columns]
    if absent:
        raise MlcycleError(
            f"parameter score_run: the inference table of score run {score_run} lacks the "
            f"champion's feature column(s) {', '.join(absent)}"
        )


def rows_of(model, schema, features: pd.DataFrame, y=None, stored=(None, None)):
    """estimation.Rows of the champion on these rows (its stored predictions when given)."""
    predictions, proba = stored
    if predictions is None:
        predictions = predict(model, features)
    if schema.task == "classification" and proba is None:
        frame = predict_proba(model, features, schema.classes)
        proba = None if frame is None else frame[list(schema.classes)].to_numpy(dtype="float64")
    return estimation.Rows(
        features.reset_index(drop=True),
        np.asarray(predictions),
        proba,
        None if y is None else np.asarray(y),
    )


# --- the step's work: measured, then published once -----------------------------------


def monitor_batch(
    *,
    score_run: str,
    model_name: str,
    best,
    etl_run: str,
    output: str,
    sample_size: int,
    moves: list[dict],
    preprocessor: estimation.Preprocessor,
) -> dict[str, Path]:
    """Everything a label-free monitor does, in the active run; the page's paths. `best`
    is the champion pinned to its version (`mlcycle.lifecycle.registry.Champion`) and
    `moves` the ledger's alias moves as the report's History lists them: both are read by
    the lifecycle wing and handed in, this wing only measures; `preprocessor` is the
    models' preprocessing, which the loss models are built with."""
    outcome = measure(score_run, model_name, best, etl_run, sample_size, preprocessor)
    return batch_page.publish_batch(outcome, moves, output)


def measure(
    score_run: str,
    model_name: str,
    best,
    etl_run: str,
    sample_size: int,
    preprocessor: estimation.Preprocessor,
) -> batch_page.BatchOutcome:
    """The batch read from the score run's inference table, the champion's estimated
    performance on it and the drift against the etl run's current rows; the run tagged."""
    scored = inference.score_run(score_run)
    scored_name = scored.data.tags.get("mlcycle.model_name", "")
    if scored_name and scored_name != model_name:
        raise MlcycleError(
            f"parameter score_run: run {score_run} scored model {scored_name}, not "
            f"{model_name}: pass model_name={scored_name}"
        )
    frame = inference.read_batch(score_run)
    if frame.empty:
        raise MlcycleError(f"parameter score_run: score run {score_run} scored no row")
    etl = etl_run or best.etl_run or scored.data.tags.get(ETL_RUN_TAG)
    if not etl:
        raise MlcycleError(
            f"no etl run is recorded for {best.uri}: pass etl_run (its calibration rows)"
        )
    input_file = scored.data.params.get("input", "")
    mlflow.set_tags(
        {
            config.STEP_TAG: "monitor",
            history.LABELS_TAG: "absent",
            "mlcycle.score_run": score_run,
            "mlcycle.model_name": model_name,
            "mlcycle.champion_version": best.version or "",
            ETL_RUN_TAG: etl,
            history.CURRENT_DATA_TAG: input_file,
        }
    )
    schema, splits = load_splits(etl)
    check_features(frame, schema, score_run)
    features = frame[schema.features]
    stored = batch_predictions(
        frame, schema, scored.data.tags.get("mlcycle.model_version"), best.version
    )
    batch = rows_of(best.model, schema, features, stored=stored)
    calibration_frame = getattr(splits, CALIBRATION_SPLIT)
    calibration = rows_of(
        best.model,
        schema,
        calibration_frame[schema.features],
        calibration_frame[schema.target],
    )
    estimate, estimate_error = None, None
    try:
        estimate = estimation.estimate(schema, calibration, batch, preprocessor=preprocessor)
    except ValueError as exc:  # a classifier without probabilities
        estimate_error = f"performance not estimated: {exc}"
    reference = pd.concat([splits.current_train, splits.current_test], ignore_index=True)
    column = drift.prediction_column("champion", set(schema.features) | {schema.target})
    drift_result, drift_error = None, None
    try:
        # The batch's predictions are made (or stored by score): only the reference's are.
        scored_rows = batch.features.assign(**{column: batch.predictions})
        drift_result = drift.run_drift(
            reference, scored_rows, schema, {column: best.model}, sample_size
        )
    except MlcycleError:
        raise
    except Exception as exc:  # noqa: BLE001 - the rest of the page still stands
        log.exception("drift could not be measured")
        drift_error = f"drift could not be measured: {type(exc).__name__}: {exc}"
    return batch_page.BatchOutcome(
        model_name=model_name,
        score_run=score_run,
        etl_run=etl,
        input_file=input_file,
        inference_table=scored.data.tags.get(inference.TABLE_TAG, ""),
        calibration_split=CALIBRATION_SPLIT,
        schema=schema,
        champion=best,
        features=features,
        reference=reference,
        predictions_stored=stored[0] is not None,
        estimate=estimate,
        estimate_error=estimate_error,
        drift=drift_result,
        drift_error=drift_error,
        owners={column: "champion"},
    )
