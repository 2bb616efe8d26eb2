"""The page of a label-free monitor run (`unlabelled.html`), its metrics and its
history.json, published once over a `BatchOutcome` that `mlcycle.monitoring.unlabelled`
fixed before anything is written: as `mlcycle.monitoring.publish` does for a labelled run."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from mlcycle import config
from mlcycle.monitoring import estimation, history, quality, report, tables
from mlcycle.monitoring.metrics import PRIMARY

log = logging.getLogger("mlcycle.monitor")

TEMPLATE = "unlabelled.html"
HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class BatchOutcome:
    """What a label-free monitor measured, fixed before the run writes anything."""

    model_name: str
    score_run: str
    etl_run: str
    input_file: str
    inference_table: str
    calibration_split: str
    schema: Any
    champion: Any  # mlcycle.lifecycle.registry.Champion
    features: pd.DataFrame
    reference: pd.DataFrame
    predictions_stored: bool
    estimate: estimation.Estimate | None
    estimate_error: str | None
    drift: Any  # mlcycle.monitoring.drift.DriftResult
    drift_error: str | None
    owners: dict

    @property
    def batch_rows(self) -> int:
        return len(self.features)


def headline(estimate: estimation.Estimate | None, version: str | None) -> dict:
    """How the champion is doing, in one line, and the verdict's colour: its estimated
    primary metric on the batch against the one realised on its calibration rows."""
    who = f"Champion v{version}" if version else "The champion"
    if estimate is None:
        return {"status": "unknown", "text": f"{who}: performance not estimated", "delta": None}
    name = "R²" if estimate.primary == "r2" else estimate.primary.upper()
    if not (math.isfinite(estimate.low) and math.isfinite(estimate.high)):
        text = f"{who}: {estimate.batch_rows:,} rows are too few to judge its {name}"
        if estimate.batch_rows >= estimation.MIN_BATCH_ROWS:
            text = f"{who}: its {name} on this batch could not be estimated with a band"
        return {"status": "unknown", "text": text, "delta": None, "name": name}
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


def publish_batch(outcome: BatchOutcome, moves: list[dict], output: str) -> dict[str, Path]:
    """The run's metrics, then its page, Evidently's HTML and history.json in a report
    folder of their own and in the run's artifacts; the page's paths. `moves` are the
    ledger's alias moves the History lists."""
    run = mlflow.active_run()
    estimate, best, schema = outcome.estimate, outcome.champion, outcome.schema
    numbers = logged_metrics(estimate, outcome.drift, outcome.owners, outcome.batch_rows)
    mlflow.log_metrics(numbers)
    if estimate is not None:
        log.info(
            "estimated %s %.4f [%.4f, %.4f] on %d rows (reference %.4f), %s",
            estimate.primary,
            estimate.metrics[estimate.primary],
            estimate.low,
            estimate.high,
            outcome.batch_rows,
            estimate.reference[estimate.primary],
            estimate.method,
        )
    entries = history.of_model(
        outcome.model_name, run.info.run_id, PRIMARY[schema.task], schema.features
    )
    entries[-1].update(champion_version=best.version or "")
    drift_result = outcome.drift
    context = {
        "model_name": outcome.model_name,
        "task": schema.task,
        "target": schema.target,
        "primary": PRIMARY[schema.task],
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "headline": headline(estimate, best.version),
        "estimate": estimate,
        "estimate_error": outcome.estimate_error,
        "drift": drift_result,
        "drift_error": outcome.drift_error,
        "drifted_features": drift_result.drifted_features() if drift_result else [],
        "quality": quality.by_feature(outcome.reference, outcome.features, schema),
        "batch_rows": outcome.batch_rows,
        "reference_rows": len(outcome.reference),
        "calibration_split": outcome.calibration_split,
        "champion": best,
        "predictions_stored": outcome.predictions_stored,
        "history": _history(entries, moves),
        "provenance": [
            ("monitor run", run.info.run_id),
            ("experiment", run.info.experiment_id),
            ("score run", outcome.score_run),
            ("batch file", outcome.input_file),
            ("inference table", outcome.inference_table),
            ("champion", f"{best.uri} = {best.loaded}"),
            ("etl run (reference and calibration rows)", outcome.etl_run),
            ("tracking store", config.tracking_uri()),
        ],
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "ui_hint": f"mlflow ui --backend-store-uri {config.tracking_uri()}",
    }
    folder = report.report_folder(output, outcome.model_name, report.timestamp())
    paths = write_page(folder, context, drift_result.snapshot if drift_result else None)
    (folder / HISTORY_FILE).write_text(json.dumps(entries, indent=2, ensure_ascii=False))
    mlflow.log_artifacts(str(folder), "report")
    mlflow.set_tag("mlcycle.report", str(paths["report"]))
    return paths


def _history(entries: list[dict], moves: list[dict]) -> dict:
    title = (
        "share of features drifted, drift score per feature and the champion's metric, "
        "measured (labelled runs), or estimated (open squares) and realised once the labels "
        "came (filled squares), run after run"
    )
    return history.section(entries, moves, title)


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
