"""The etl step: read reference and current CSVs, validate, split without leaks.

Reads two CSV files; writes, as artifacts of the active run,
`datasets/{reference,current}_{train,test}.parquet`, `datasets/schema.json` and
`datasets/quality.json`, and records both files with `mlflow.log_input`. Later steps
find the splits through the etl run's id (`load_splits`)."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from mlcycle import config
from mlcycle.config import resolve_path
from mlcycle.errors import MlcycleError
from mlcycle.ingest import data
from mlcycle.ingest.data import Schema
from mlcycle.ingest.datasets import DATASETS_DIR, latest_etl_run, load_splits
from mlcycle.ingest.split import Splits, make_splits
from mlcycle.monitoring import quality
from mlcycle.steps.params.etl import EtlParams

log = logging.getLogger(__name__)


@dataclass
class EtlResult:
    schema: Schema
    splits: Splits
    quality: dict
    raw: dict[str, pd.DataFrame]


def prepare(params: EtlParams) -> EtlResult:
    """Read, validate, conform and split both files. Pure: no MLflow."""
    paths = {"reference": resolve_path(params.reference), "current": resolve_path(params.current)}
    tables = {role: data.read_table(path, role) for role, path in paths.items()}
    raw = {role: table.frame for role, table in tables.items()}
    schema = data.build_schema(
        raw["reference"], params.target, params.task, data.parse_columns(params.drop_columns)
    )
    data.check_kinds(raw, schema, paths)
    frames, removed = {}, {}
    for role, frame in raw.items():
        conformed = data.conform(frame, schema, role, paths[role])
        frames[role], removed[role] = data.drop_missing_target(conformed, schema.target, role)
        if schema.task == "classification":
            frames[role][schema.target] = data.whole_labels(frames[role][schema.target])
            if role == "reference":
                data.check_classes(frames[role], schema, role)
    if schema.task == "classification":
        labels = pd.concat([frames["reference"][schema.target], frames["current"][schema.target]])
        schema.classes = sorted(labels.unique().tolist(), key=str)
    splits, leaks = make_splits(
        frames["reference"], frames["current"], schema, params.test_size, params.seed
    )
    summary = quality.summary(frames["reference"], frames["current"], schema, removed, tables)
    summary["removed_leaked_test_rows"] = leaks
    summary["split_rows"] = {name: len(frame) for name, frame in splits.items()}
    return EtlResult(schema=schema, splits=splits, quality=summary, raw=raw)


def log_etl(result: EtlResult, params: EtlParams) -> None:
    """Write the splits, schema and quality summary to the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / DATASETS_DIR
        out.mkdir()
        for name, frame in result.splits.items():
            frame.to_parquet(out / f"{name}.parquet", index=False)
        (out / "schema.json").write_text(
            json.dumps(result.schema.to_dict(), indent=2, ensure_ascii=False)
        )
        (out / "quality.json").write_text(json.dumps(result.quality, indent=2, ensure_ascii=False))
        mlflow.log_artifacts(str(out), DATASETS_DIR)
    for role, path in (("reference", params.reference), ("current", params.current)):
        frame = result.raw[role]
        dataset = mlflow.data.from_pandas(
            frame, source=str(resolve_path(path)), name=role, targets=result.schema.target
        )
        mlflow.log_input(dataset, context=role)
    q = result.quality
    mlflow.log_metrics(
        {
            **{f"{name}_rows": float(n) for name, n in q["split_rows"].items()},
            "reference_removed_missing_target": float(q["removed_missing_target"]["reference"]),
            "current_removed_missing_target": float(q["removed_missing_target"]["current"]),
            "removed_leaked_test_rows": float(sum(q["removed_leaked_test_rows"].values())),
            "n_new_categories": float(sum(len(v) for v in q["new_categories_in_current"].values())),
            **{
                f"{role}_{kind}_as_missing": float(sum(counts[kind].values()))
                for role, counts in q["read_as_missing"].items()
                for kind in ("placeholders", "infinite")
            },
        }
    )
    mlflow.set_tags({"mlcycle.task": result.schema.task, "mlcycle.target": result.schema.target})


def execute(params: EtlParams) -> EtlResult:
    """prepare + log_etl, in the active run."""
    result = prepare(params)
    log_etl(result, params)
    log.info(
        "etl: %s task on target %r; rows %s",
        result.schema.task,
        result.schema.target,
        result.quality["split_rows"],
    )
    return result


def resolve_etl_run(etl_run: str | None) -> str:
    """The given etl run, else the newest finished one, else a fresh etl on the defaults.

    Called inside the step's run: a fresh etl runs as a nested run tagged like any other."""
    if etl_run:
        try:
            run = mlflow.get_run(etl_run)
        except MlflowException as exc:
            raise MlcycleError(f"parameter etl_run: no run with id {etl_run!r}") from exc
        if run.data.tags.get(config.STEP_TAG) != "etl":
            raise MlcycleError(f"parameter etl_run: run {etl_run} is not an etl run")
        if run.info.status != "FINISHED":
            raise MlcycleError(
                f"parameter etl_run: run {etl_run} is {run.info.status}, not FINISHED"
            )
        return etl_run
    found = latest_etl_run()
    if found:
        log.info("using the latest finished etl run %s", found)
        return found
    log.info("no finished etl run in this experiment: running etl on the defaults first")
    params = EtlParams()
    with mlflow.start_run(nested=True, run_name="etl") as run:
        mlflow.set_tag(config.STEP_TAG, "etl")
        mlflow.log_params(vars(params))
        execute(params)
    return run.info.run_id


@dataclass(frozen=True)
class OpenedEtl:
    """An etl run as a later step reads it: its id, schema and splits."""

    run_id: str
    schema: Schema
    splits: Splits

    @property
    def params(self) -> dict[str, str]:
        """The etl run's parameters (its reference and current files among them)."""
        return mlflow.get_run(self.run_id).data.params


def open_etl(etl_run: str | None, tags: dict[str, str] | None = None) -> OpenedEtl:
    """The opening of every step that reads an etl run: resolve it (`resolve_etl_run`),
    tag the active run with it (and `tags`), load its schema and splits."""
    run_id = resolve_etl_run(etl_run)
    mlflow.set_tags({"mlcycle.etl_run": run_id, **(tags or {})})
    schema, splits = load_splits(run_id)
    return OpenedEtl(run_id, schema, splits)
