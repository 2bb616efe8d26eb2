"""The feedback step: labels that arrive after scoring, joined to the inference log.

Reads a CSV of labels (`prediction_id`, or the identifier columns, plus the target; an
optional `labelled_at`) and the model's inference log (`mlcycle.ingest.inference`); joins them
(`mlcycle.models.labels`: every label kept that can be, the others counted with one line each).
Writes the labelled rows as a CSV `etl` and `main` take as `current` (identifiers,
features as scored, the target, `prediction_id`), and the labels kept to the label
store. Records in the active run the counts (metrics), the output (tag
`mlcycle.feedback.output`) and the labels file (dataset, context `labels`); and per
scored batch the labels touch, in the order the batches were scored, a nested run
`feedback_batch` with the realised metrics of the version that scored it on every label
known for the batch so far (`realised_<metric>`, `label_coverage`, `labelled_rows`,
`label_lag_seconds`), each logged with the labelled rows as its MLflow dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from mlflow.exceptions import MlflowException

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest import inference
from mlcycle.ingest.data import Schema, parse_columns
from mlcycle.ingest.datasets import DATASETS_DIR
from mlcycle.ingest.inference import PARTITION, PREDICTION_ID, SCORED_AT
from mlcycle.lifecycle import lineage
from mlcycle.models import labels
from mlcycle.models.labels import LABELLED_AT, Joined, Spec
from mlcycle.steps.params.feedback import FeedbackParams
from mlcycle.steps.score import ETL_RUN_TAG, input_path

log = logging.getLogger(__name__)


@dataclass
class Feedback:
    """What feedback did: the join, the output, the batches it touched (oldest first)."""

    joined: Joined
    spec: Spec
    output: Path
    batches: dict[str, pd.DataFrame]  # score run -> every labelled row known for it
    batch_rows: dict[str, int]
    features: list[str]  # the log's feature columns, as scored
    source: Path  # the labels file
    raw: pd.DataFrame  # the labels file as read


# --------------------------------------------------------------------------- the pure part


def labelled_batches(
    joined: Joined, table: pd.DataFrame, store: pd.DataFrame, target: str
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Per batch the labels touch, oldest first: its rows labelled so far (the store's
    labels, then this file's, the latest winning) and its size."""
    touched = joined.rows.drop_duplicates(PARTITION).sort_values(SCORED_AT)[PARTITION].tolist()
    earlier = store[
        store[PARTITION].isin(touched) & ~store[PREDICTION_ID].isin(joined.rows[PREDICTION_ID])
    ]
    columns = [PREDICTION_ID, target, LABELLED_AT]
    known = joined.rows[columns]
    if len(earlier):
        known = pd.concat([earlier[columns], known], ignore_index=True)
    sizes = table[PARTITION].value_counts()
    batches = {}
    for run in touched:
        if len(earlier) and earlier[PARTITION].eq(run).any():
            rows = table[table[PARTITION] == run]
            batches[run] = rows.merge(known, on=PREDICTION_ID, how="inner")
        else:  # only this file's labels: the joined rows are the batch's labelled rows
            batches[run] = joined.rows[joined.rows[PARTITION] == run].reset_index(drop=True)
    return batches, {run: int(sizes[run]) for run in touched}


def joined_file_frame(rows: pd.DataFrame, spec: Spec, features: list[str]) -> pd.DataFrame:
    """The labelled rows as the original data had them: identifiers, features, target,
    then prediction_id (etl ignores a column its reference lacks)."""
    identifiers = [c for c in spec.identifiers if c in rows.columns and c != PREDICTION_ID]
    present = [c for c in features if c in rows.columns and c not in identifiers]
    return rows[identifiers + present + [spec.target, PREDICTION_ID]]


def output_path(output: str, model_name: str, base: Path, now: datetime) -> Path:
    """feedback/<model_name>/<UTC time>.csv by default; a folder gets a timestamped file."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    if not output:
        return base / "feedback" / model_name / f"{stamp}.csv"
    path = Path(output).expanduser()
    path = path if path.is_absolute() else base / path
    return path / f"{stamp}.csv" if output.endswith("/") else path


# ------------------------------------------------------------------------ what MLflow holds


def spec_for(table: pd.DataFrame) -> Spec:
    """The target, task, classes and identifiers of the etl run behind the newest batch."""
    newest = table[PARTITION].iloc[-1]
    try:
        etl_run = mlflow.get_run(newest).data.tags.get(ETL_RUN_TAG)
    except MlflowException:
        etl_run = None
    if not etl_run:
        raise MlcycleError(
            f"score run {newest} names no etl run: feedback cannot tell the target's name and type"
        )
    schema = Schema.from_dict(
        mlflow.artifacts.load_dict(f"runs:/{etl_run}/{DATASETS_DIR}/schema.json")
    )
    given = mlflow.get_run(etl_run).data.params.get("drop_columns")
    identifiers = parse_columns(given) if given is not None else list(schema.dropped)
    return Spec(schema.target, schema.task, list(schema.classes), identifiers)


def features_of(table: pd.DataFrame, spec: Spec) -> list[str]:
    """The log's feature columns: neither its own columns nor identifiers nor predictions."""
    own = {PREDICTION_ID, SCORED_AT, inference.MODEL_VERSION, "row", PARTITION, "prediction"}
    return [
        c
        for c in table.columns
        if c not in own and c not in spec.identifiers and not c.startswith("proba_")
    ]


def prepare(params: FeedbackParams, now: datetime | None = None) -> Feedback:
    """Read the labels and the log, join, gather each touched batch's labelled rows."""
    now = now or datetime.now(UTC)
    path = input_path(params.labels)
    frame = labels.read_labels(path)
    table = inference.read_table(params.model_name)
    spec = spec_for(table)
    spec.now = pd.Timestamp(now)
    store = labels.read_store(params.model_name, spec.target)
    joined = labels.join_labels(
        frame, table, spec, pd.Index(store[PREDICTION_ID]), inference.model_of, params.model_name
    )
    for line in joined.problems:
        log.warning("labels file %s: %s", path, line)
    if joined.rows.empty:
        why = ", ".join(f"{k} {v}" for k, v in joined.counts.items() if v and k != "labels_read")
        raise MlcycleError(
            f"no label of {path} lands on a row {params.model_name} scored ({why}); "
            "nothing was written"
        )
    batches, sizes = labelled_batches(joined, table, store, spec.target)
    base = config.output_root(config.launcher_folder())
    output = output_path(params.output, params.model_name, base, now)
    check_output(output, path)
    return Feedback(joined, spec, output, batches, sizes, features_of(table, spec), path, frame)


def check_output(output: Path, source: Path) -> None:
    """The labelled rows never replace the labels file they were made from: it was
    overwritten without a word, and the user's labels were gone."""
    if output.resolve() == source.resolve():
        raise MlcycleError(
            f"parameter output names the labels file itself ({source}): the labelled rows "
            "would overwrite it; give another file or a folder ending with /"
        )


def write_output(result: Feedback) -> None:
    """The labelled rows as CSV, before anything else is written (store, runs), so an
    output that cannot be written leaves nothing behind."""
    frame = joined_file_frame(result.joined.rows, result.spec, result.features)
    try:
        result.output.parent.mkdir(parents=True, exist_ok=True)
        pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), result.output)
    except OSError as exc:
        raise MlcycleError(
            f"parameter output: cannot write {result.output} ({exc.strerror or exc}); "
            "nothing was written"
        ) from exc


# ---------------------------------------------------------------------------------- logging


def log_batch(score_run: str, rows: pd.DataFrame, size: int, result: Feedback, name: str):
    """One nested run for one scored batch: realised metrics on its labelled rows."""
    spec = result.spec
    try:
        scored = mlflow.get_run(score_run).data.tags
    except MlflowException:
        scored = {}
    version = str(rows[inference.MODEL_VERSION].iloc[0]) if len(rows) else ""
    metrics = labels.batch_metrics(rows, size, spec)
    columns = joined_file_frame(rows, spec, result.features).columns.tolist() + ["prediction"]
    dataset = lineage.rows_dataset(
        rows[columns],
        source=str(result.output),
        name=f"labels-{score_run[:8]}",
        targets=spec.target,
        predictions="prediction",
    )
    with mlflow.start_run(nested=True, run_name=f"feedback {score_run[:8]}") as run:
        mlflow.set_tags(
            {
                config.STEP_TAG: "feedback_batch",
                "mlcycle.score_run": score_run,
                "mlcycle.model_name": name,
                "mlcycle.model_version": version or scored.get("mlcycle.model_version", ""),
            }
        )
        mlflow.log_input(dataset, context="labels")
        model_id = scored.get("mlcycle.model_id") or None
        try:
            mlflow.log_metrics(metrics, dataset=dataset, model_id=model_id)
        except MlflowException:  # the model that scored is gone: the metrics still count
            mlflow.log_metrics(metrics, dataset=dataset)
    log.info(
        "batch %s (version %s): %d of %d rows labelled, %s",
        score_run,
        version,
        len(rows),
        size,
        ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith("realised_")),
    )
    return run.info.run_id


def log_feedback(result: Feedback, params: FeedbackParams) -> None:
    counts = result.joined.counts
    mlflow.set_tags(
        {
            "mlcycle.model_name": params.model_name,
            "mlcycle.feedback.output": str(result.output),
            "mlcycle.feedback.key": result.joined.key,
            "mlcycle.target": result.spec.target,
        }
    )
    dataset = lineage.rows_dataset(result.raw, source=str(result.source), name=result.source.stem)
    mlflow.log_input(dataset, context="labels")
    mlflow.log_metrics(
        {**{k: float(v) for k, v in counts.items()}, "batches_touched": float(len(result.batches))}
    )
    for score_run, rows in result.batches.items():
        log_batch(score_run, rows, result.batch_rows[score_run], result, params.model_name)


def execute(params: FeedbackParams) -> Feedback:
    """prepare, write the labelled rows and the store, log: in the active run."""
    result = prepare(params)
    write_output(result)
    labels.write_store(
        params.model_name,
        mlflow.active_run().info.run_id,
        result.joined.rows,
        result.spec.target,
    )
    log_feedback(result, params)
    counts = result.joined.counts
    log.info(
        "feedback: %d of %d labels joined to %d batch(es) -> %s",
        counts["labels_joined"],
        counts["labels_read"],
        len(result.batches),
        result.output,
    )
    return result
