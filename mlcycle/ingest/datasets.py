"""The etl run's outputs as the other steps read them: its splits and schema.

A thin MLflow adapter: the etl step writes `datasets/` artifacts; every later step finds
them through the etl run's id."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import SPLIT_NAMES, Splits

DATASETS_DIR = "datasets"


def newest_finished(experiment_id: str, tag: str, value: str):
    """The newest FINISHED run of the experiment whose tag has this value, or None."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0] if runs else None


def latest_etl_run(experiment_id: str | None = None) -> str | None:
    """The id of the newest finished etl run of the experiment, or None."""
    run = newest_finished(experiment_id or current_experiment_id(), config.STEP_TAG, "etl")
    return run.info.run_id if run else None


def current_experiment_id() -> str:
    active = mlflow.active_run()
    if active:
        return active.info.experiment_id
    from mlflow.tracking.fluent import _get_experiment_id

    return _get_experiment_id()


def load_splits(etl_run: str) -> tuple[Schema, Splits]:
    """Download an etl run's splits and schema."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=etl_run, artifact_path=DATASETS_DIR, dst_path=tmp
                )
            )
        except (MlflowException, OSError) as exc:
            raise MlcycleError(f"etl run {etl_run} has no datasets artifacts: {exc}") from exc
        schema = Schema.from_dict(json.loads((local / "schema.json").read_text()))
        frames = {name: pd.read_parquet(local / f"{name}.parquet") for name in SPLIT_NAMES}
    return schema, Splits(**frames)
