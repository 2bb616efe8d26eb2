"""What the tracking store knows about a model's production loop, read for `watch`
(docs/lifecycle.md, "Deciding when to retrain"): its FINISHED runs of each step (found by
the tag `mlcycle.model_name` in every experiment), the champion, the baseline its decay
is measured from, when it took over, the last retrain, and the labelled rows `feedback`
gathered since. `mlcycle.lifecycle.trigger` judges what this returns."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from mlcycle import config
from mlcycle.ingest import inference
from mlcycle.lifecycle import ledger, registry, trigger
from mlcycle.monitoring.metrics import PRIMARY

log = logging.getLogger(__name__)

TRIGGER_TAG = "mlcycle.watch.trigger"
FEEDBACK_OUTPUT_TAG = "mlcycle.feedback.output"
PREDICTION_ID = "prediction_id"
MAX_RUNS = 5000


def merged_labels(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The labelled rows of several feedback files as one; a prediction labelled twice
    keeps its newest label (files come oldest first)."""
    merged = pd.concat(frames, ignore_index=True)
    if PREDICTION_ID in merged.columns:
        merged = merged.drop_duplicates(PREDICTION_ID, keep="last")
    return merged


def runs(model_name: str, step: str, *conditions: str) -> list[dict]:
    """The model's FINISHED runs of a step in every experiment, as plain dicts."""
    quoted = model_name.replace("'", "\\'")
    query = " and ".join(
        [
            f"tags.`{config.STEP_TAG}` = '{step}'",
            f"tags.`mlcycle.model_name` = '{quoted}'",
            "attributes.status = 'FINISHED'",
            *conditions,
        ]
    )
    found = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=query,
        order_by=["attributes.start_time ASC"],
        max_results=MAX_RUNS,
        output_format="list",
    )
    return [
        {
            "run_id": r.info.run_id,
            "start": r.info.start_time,
            "score_run": r.data.tags.get("mlcycle.score_run", ""),
            "tags": r.data.tags,
            "metrics": r.data.metrics,
        }
        for r in found
    ]


def champion_version(model_name: str):
    return registry.version_for_alias(model_name, config.CHAMPION)


def task_of(version) -> str | None:
    """The task of the etl run the champion learned from."""
    etl_run = etl_run_of(version)
    if not etl_run:
        return None
    try:
        return mlflow.get_run(etl_run).data.tags.get("mlcycle.task")
    except MlflowException:
        return None


def etl_run_of(version) -> str | None:
    if version is None:
        return None
    found = (version.tags or {}).get("mlcycle.etl_run")
    if found:
        return found
    try:
        return mlflow.get_run(version.run_id).data.tags.get("mlcycle.etl_run")
    except MlflowException:
        return None


def baseline_of(version, metric: str) -> tuple[float | None, str]:
    """The champion's own held-out primary metric, and where it was read: the monitor run
    that promoted it (`challenger_current_test_<metric>`, measured on the rows the gate
    judged), else the run that trained it (`current_test_<metric>`: a first champion
    adopted without a gate)."""
    if version is None:
        return None, "no champion"
    promoted_by = (version.tags or {}).get("mlcycle.promotion.monitor_run")
    for run_id, key in (
        (promoted_by, f"challenger_current_test_{metric}"),
        (version.run_id, f"current_test_{metric}"),
    ):
        if not run_id:
            continue
        try:
            value = mlflow.get_run(run_id).data.metrics.get(key)
        except MlflowException:
            continue
        if value is not None:
            return value, f"run {run_id} metric {key}"
    return None, "no held-out metric found"


def champion_since(model_name: str, version) -> int | None:
    """When the champion took over (ms): its last move in the ledger, else its creation."""
    if version is None:
        return None
    moves = [
        e
        for e in ledger.history(model_name)
        if e.alias == config.CHAMPION and e.to_version == str(version.version)
    ]
    if moves:
        return int(moves[-1].time.timestamp() * 1000)
    return version.creation_timestamp


def last_retrain(model_name: str, since: int | None) -> int | None:
    """The newest of: the champion's arrival, a watch that triggered, a main run that
    finished. A failed or killed main retrained nothing: counted, it hid the labelled
    windows before it and restarted the cooldown."""
    found = [since] if since is not None else []
    found += [r["start"] for r in runs(model_name, "watch", f"tags.`{TRIGGER_TAG}` = 'true'")]
    quoted = model_name.replace("'", "\\'")
    mains = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{config.STEP_TAG}` = 'main' and params.model_name = '{quoted}'"
        " and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    found += [r.info.start_time for r in mains]
    return max(found) if found else None


def read_evidence(model_name: str) -> dict:
    version = champion_version(model_name)
    feedback_batches = runs(model_name, "feedback_batch")
    metric = PRIMARY.get(task_of(version) or "", "")
    if not metric:  # no champion's etl run: the metric the feedback realised
        keys = {k for r in feedback_batches for k in r["metrics"]}
        metric = "f1" if "realised_f1" in keys else "r2"
    baseline, source = baseline_of(version, metric)
    since = champion_since(model_name, version)
    monitors = runs(model_name, "monitor", "tags.`mlcycle.monitor.labels` = 'absent'")
    return trigger.assemble(
        metric=metric,
        champion=str(version.version) if version else None,
        baseline=baseline,
        baseline_source=source,
        champion_since=since,
        last_retrain=last_retrain(model_name, since),
        score_runs=runs(model_name, "score"),
        feedback_batches=feedback_batches,
        monitor_runs=monitors,
    )


def gathered_labels(
    model_name: str, since: int | None, run_id: str, batches: list[str] | None = None
) -> Path | None:
    """The labelled rows feedback gathered since the champion took over, as one CSV:
    the newest feedback run's output, or those of several merged into
    `watch-<run>.csv` beside the newest. With `batches` (score run ids), only the rows
    those batches scored, in `watch-<run>.csv`. None when there are none."""
    fed = [r for r in runs(model_name, "feedback") if since is None or r["start"] > since]
    files = []
    for r in fed:
        path = r["tags"].get(FEEDBACK_OUTPUT_TAG)
        if path and Path(path).is_file():
            files.append(Path(path))
        elif path:
            log.warning("feedback run %s: its output %s is gone; skipped", r["run_id"], path)
    if not files or (len(files) == 1 and batches is None):
        return files[0] if files else None
    merged = merged_labels([pd.read_csv(p) for p in files])
    if batches is not None:
        if PREDICTION_ID not in merged.columns:
            return None
        merged = merged[inference.run_of(merged[PREDICTION_ID]).isin(batches).to_numpy()]
        if merged.empty:
            return None
    out = files[-1].parent / f"watch-{run_id}.csv"
    merged.to_csv(out, index=False)
    log.info(
        "the labelled rows of %d feedback run(s)%s: %d rows in %s",
        len(files),
        "" if batches is None else f", of the {len(batches)} batch(es) since the change",
        len(merged),
        out,
    )
    return out
