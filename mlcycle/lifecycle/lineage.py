"""Which rows each metric of a logged model was measured on, and which rows trained it:
MLflow 3 lineage for the steps that log models (baseline, optimize, retrain).

The etl run's splits become MLflow datasets (name = the split, digest = MLflow's hash of
its rows, source = the parquet file in the etl run's artifacts), so the same rows carry
the same name and digest in every step, and `mlflow.search_logged_models(datasets=...)`
finds every model measured on them.

MLflow 3.17 attaches every step-0 metric of a run to the model logged in it, without a
dataset (measured here: metrics logged before `log_model` are copied onto the model;
fluent `log_metrics` after it attach to it). So a step logs its model first, then the
model's metrics through `log_model_metrics` (model id and dataset on each), then the
run's other metrics through `log_run_metrics`, which leaves the model alone."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping

import mlflow
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities import LoggedModelInput, Metric
from mlflow.exceptions import MlflowException

from mlcycle.ingest.data import Schema
from mlcycle.ingest.datasets import DATASETS_DIR
from mlcycle.ingest.split import SPLIT_NAMES, Splits
from mlcycle.monitoring.evaluate import TEST_SPLITS

log = logging.getLogger("mlcycle.lineage")

TRAINING_CONTEXT = "training"


# A pandas dataset as MLflow builds it costs seconds a column on large frames: its digest
# maps type() over every value (though it hashes only the first 10,000 rows) and its
# schema is inferred value by value in Python (measured here: 100 s of feedback's 140 s for
# two batches of 500,000 labelled rows, 18 columns, on a busy 2-core machine). Here the
# digest hashes the first rows, the row count and the columns, and the schema is inferred
# on the first rows; the row count of the profile still covers every row.
SAMPLE_ROWS = 1_000


def rows_dataset(
    frame: pd.DataFrame,
    source: str,
    name: str,
    targets: str | None = None,
    predictions: str | None = None,
) -> PandasDataset:
    """`mlflow.data.from_pandas(frame, ...)` at the cost of a sample of its rows."""
    head = frame.head(SAMPLE_ROWS)
    digest = hashlib.sha256(pd.util.hash_pandas_object(head, index=False).to_numpy().tobytes())
    digest.update(f"{len(frame)}|{'|'.join(map(str, frame.columns))}".encode())
    dataset = PandasDataset(
        frame, resolve_dataset_source(source), targets, name, digest.hexdigest()[:8], predictions
    )
    # PandasDataset.schema is a cached_property: set once, it is never inferred again.
    dataset.__dict__["schema"] = PandasDataset(head, dataset.source, digest="sample").schema
    return dataset


def split_dataset(frame: pd.DataFrame, schema: Schema, name: str, etl_run: str) -> PandasDataset:
    """Rows of the etl run as an MLflow dataset named `name`; its source is the etl run's
    `datasets/<name>.parquet` for a split, its `datasets/` folder for rows joined from
    several (retrain's window=all)."""
    folder = f"{mlflow.get_run(etl_run).info.artifact_uri}/{DATASETS_DIR}"
    source = f"{folder}/{name}.parquet" if name in SPLIT_NAMES else folder
    try:
        return mlflow.data.from_pandas(frame, source=source, name=name, targets=schema.target)
    except MlflowException:
        # A store MLflow has no dataset source for (mlflow-artifacts:/ behind a tracking
        # server): name and digest are what lineage needs; the source stays MLflow's default.
        log.debug("no dataset source for %s; logging %s without it", source, name)
        return mlflow.data.from_pandas(frame, name=name, targets=schema.target)


def held_out_datasets(splits: Splits, schema: Schema, etl_run: str) -> dict[str, PandasDataset]:
    """The held-out splits every model is measured on, by name."""
    return {
        name: split_dataset(getattr(splits, name), schema, name, etl_run) for name in TEST_SPLITS
    }


def split_of(metric: str) -> str | None:
    """The test split a metric was measured on, from its name: `current_test_r2` and
    `after_current_test_r2` -> `current_test`; None for metrics of no test split."""
    for split in TEST_SPLITS:
        if metric.startswith(f"{split}_") or f"_{split}_" in metric:
            return split
    return None


def by_dataset(
    metrics: Mapping[str, float],
    tests: Mapping[str, PandasDataset],
    training: PandasDataset | None = None,
) -> list[tuple[PandasDataset, dict[str, float]]]:
    """Metrics grouped by the dataset they were measured on: the test split their name
    says, else the training rows (train_rows, epochs_trained). A metric of neither has no
    place on a model: that is a programming error, said before anything is logged."""
    groups: dict[str, tuple[PandasDataset, dict[str, float]]] = {}
    for key, value in metrics.items():
        split = split_of(key)
        dataset = tests[split] if split else training
        if dataset is None:
            raise ValueError(f"metric {key!r} names no test split and there are no training rows")
        groups.setdefault(dataset.name, (dataset, {}))[1][key] = float(value)
    return list(groups.values())


def log_model_metrics(
    model_id: str,
    metrics: Mapping[str, float],
    tests: Mapping[str, PandasDataset],
    training: PandasDataset | None = None,
) -> None:
    """Each metric in the active run and on the logged model, with the dataset it was
    measured on (one `log_metrics` call per dataset)."""
    for dataset, group in by_dataset(metrics, tests, training):
        mlflow.log_metrics(group, model_id=model_id, dataset=dataset)


def log_run_metrics(metrics: Mapping[str, float]) -> None:
    """Metrics of the active run that are no metric of its model (a study's trial counts,
    the base model's before_ figures). Through the client: MLflow's fluent log_metrics
    would attach them to the model logged in the run. Call it after the model is logged:
    log_model copies the run's earlier metrics onto the model."""
    if not metrics:
        return
    now = int(time.time() * 1000)
    rows = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
    mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=rows)


def log_training_input(model_id: str, dataset: PandasDataset) -> None:
    """The rows the model was fitted on, as the run's input in context `training`, with
    the model (MLflow's own Keras autologging links them the same way)."""
    mlflow.log_input(dataset, context=TRAINING_CONTEXT, model=LoggedModelInput(model_id))


def log_lineage(
    model_id: str,
    schema: Schema,
    splits: Splits,
    etl_run: str,
    metrics: Mapping[str, float],
    training_name: str,
    training: pd.DataFrame | None = None,
) -> None:
    """What a step logs once its model is logged: the model's metrics with their datasets,
    and its training rows (`training`, or the split called `training_name`) as the run's
    training input and as the dataset of `train_rows`, so the model page lists them and
    a search by the training rows finds the model too."""
    frame = getattr(splits, training_name) if training is None else training
    trained_on = split_dataset(frame, schema, training_name, etl_run)
    metrics = {"train_rows": float(len(frame)), **metrics}
    # The input first: MLflow logs a metric's dataset as a plain run input, and an input
    # once logged keeps its tags (the context would be lost).
    log_training_input(model_id, trained_on)
    log_model_metrics(model_id, metrics, held_out_datasets(splits, schema, etl_run), trained_on)
