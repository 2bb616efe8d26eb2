"""Monitoring a scored batch whose labels are not in yet (`monitor -P score_run=<id>`).

Reads the batch from the inference table of the score run (`mlcycle.ingest.inference`), the
champion (models:/NAME@champion unless told), and the champion's etl run (`etl_run` if
given, else the tag `mlcycle.etl_run` of its version, of the run that logged it, or of
the score run). Says what can be said without labels: feature drift and data quality of
the batch against the etl run's current rows (train and test: the newest labelled rows
the champion was judged on), the drift of the champion's predictions between the two,
and its performance estimated by `mlcycle.monitoring.estimation`, calibrated on the etl run's
current_test rows (held out from every model's training; the relationship the batch is
assumed to follow). Writes `unlabelled.html` as the page (report.html of the folder),
Evidently's HTML, history.json, the metrics and tags of the contract
(`estimated_<metric>` with `_low`/`_high`, `reference_<metric>`,
`prediction_drift_score`, the drift counts, `batch_rows`; `mlcycle.monitor.labels=absent`)
and never moves an alias: without labels nothing can be promoted."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest import inference
from mlcycle.ingest.datasets import load_splits
from mlcycle.monitoring import charts, drift, estimation, history, quality, report, tables
from mlcycle.monitoring.evaluate import predict, predict_proba
from mlcycle.monitoring.metrics import PRIMARY

log = logging.getLogger("mlcycle.monitor")

TEMPLATE = "unlabelled.html"
ETL_RUN_TAG = "mlcycle.etl_run"
CALIBRATION_SPLIT = "current_test"
HISTORY_FILE = "history.json"


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


def headline(estimate: estimation.Estimate | None, version: str | None) -> dict:
    """How the champion is doing, in one line, and the verdict's colour: its estimated
    primary metric on the batch against the one realised on its calibration rows."""
    who = f"Champion v{version}" if version else "The champion"
    if estimate is None:
        return {"status": "unknown", "text": f"{who}: performance not estimated", "delta": None}
    name = "R²" if estimate.primary == "r2" else estimate.primary.upper()
    value = estimate.metrics[estimate.primary]
    ref = estimate.reference.get(estimate.primary, math.nan)
    delta = value - ref
    if estimate.high < ref:
        status, how = "worse", "lower than"
    elif estimate.low > ref:
        status, how = "better", "higher than"
    else:
        status, how = "same", "within its band of"
    text = (
        f"{who}: estimated {name} {value:.3f} on this batch, {how} the {ref:.3f} "
        f"measured on its calibration rows ({delta:+.3f})"
    )
    return {"status": status, "text": text, "delta": delta, "name": name}


def logged_metrics(
    estimate: estimation.Estimate | None, drift_result, owners: dict, batch_rows: int
) -> dict[str, float]:
    """Every number the run records (the contract's names)."""
    numbers = {"batch_rows": float(batch_rows)}
    if estimate is not None:
        numbers.update(estimate.logged())
    if drift_result is not None:
        numbers.update(drift_result.logged())
        numbers.update(tables.drift_metrics(drift_result, owners))
        for column in drift_result.by_role("prediction"):
            if math.isfinite(column.score):
                numbers["prediction_drift_score"] = column.score
                numbers["prediction_drift"] = float(column.drifted)
    return numbers


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


# --- the step's work -----------------------------------------------------------------


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
    run = mlflow.active_run()
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
    owners = {column: "champion"}
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
    mlflow.log_metrics(logged_metrics(estimate, drift_result, owners, len(frame)))
    if estimate is not None:
        log.info(
            "estimated %s %.4f [%.4f, %.4f] on %d rows (reference %.4f), %s",
            estimate.primary,
            estimate.metrics[estimate.primary],
            estimate.low,
            estimate.high,
            len(frame),
            estimate.reference[estimate.primary],
            estimate.method,
        )
    past = [r for r in history.monitor_runs(model_name) if r.info.run_id != run.info.run_id]
    entries = history.entries([*past, mlflow.get_run(run.info.run_id)], PRIMARY[schema.task])
    entries[-1].update(champion_version=best.version or "")
    context = {
        "model_name": model_name,
        "task": schema.task,
        "target": schema.target,
        "primary": PRIMARY[schema.task],
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "headline": headline(estimate, best.version),
        "estimate": estimate,
        "estimate_error": estimate_error,
        "drift": drift_result,
        "drift_error": drift_error,
        "drifted_features": drift_result.drifted_features() if drift_result else [],
        "quality": quality.by_feature(reference, features, schema),
        "batch_rows": len(frame),
        "reference_rows": len(reference),
        "calibration_split": CALIBRATION_SPLIT,
        "champion": best,
        "predictions_stored": stored[0] is not None,
        "history": _history(entries, moves),
        "provenance": [
            ("monitor run", run.info.run_id),
            ("experiment", run.info.experiment_id),
            ("score run", score_run),
            ("batch file", input_file),
            ("inference table", scored.data.tags.get(inference.TABLE_TAG, "")),
            ("champion", f"{best.uri} = {best.loaded}"),
            ("etl run (reference and calibration rows)", etl),
            ("tracking store", config.tracking_uri()),
        ],
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "ui_hint": f"mlflow ui --backend-store-uri {config.tracking_uri()}",
    }
    folder = report.report_folder(output, model_name, report.timestamp())
    paths = write_page(folder, context, drift_result.snapshot if drift_result else None)
    (folder / HISTORY_FILE).write_text(json.dumps(entries, indent=2, ensure_ascii=False))
    mlflow.log_artifacts(str(folder), "report")
    mlflow.set_tag("mlcycle.report", str(paths["report"]))
    return paths


def _history(entries: list[dict], moves: list[dict]) -> dict:
    figure = charts.monitor_history_figure(entries)
    title = (
        "share of features drifted, drift score per feature and the champion's metric, "
        "measured (labelled runs) or estimated (open squares), run after run"
    )
    return {
        "entries": entries,
        "charts": [] if figure is None else [{"title": title, "uri": charts.figure_uri(figure)}],
        "moves": moves,
    }


def write_page(folder: Path, context: dict, snapshot=None) -> dict[str, Path]:
    """report.html (this page) and evidently.html in the folder, latest.html beside it."""
    paths = {"report": folder / report.REPORT_FILE, "latest": folder.parent / report.LATEST_FILE}
    if snapshot is not None:
        paths["evidently"] = folder / report.EVIDENTLY_FILE
        report.save_evidently_html(snapshot, paths["evidently"])
    for path, prefix in ((paths["report"], ""), (paths["latest"], f"{folder.name}/")):
        links = {
            "evidently_href": prefix + report.EVIDENTLY_FILE if snapshot is not None else None,
            "self_href": prefix + report.REPORT_FILE,
        }
        page = report.render({**context, **links}, TEMPLATE)
        path.write_text(page, encoding="utf-8")
    log.info("report: %s", paths["report"])
    return paths
