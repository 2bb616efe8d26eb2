"""A model's monitoring over time, read from the tracking store: one entry per monitor run.

Each monitor run of a model is a point of its history: when it ran, on which current
data, the share of drifted features and each one's drift score (the `drift_score.*`
metrics), the champion's and the challenger's primary metric on current_test, and the
promotion decision. `entries` builds the history from runs (pure, over MLflow `Run`
objects or anything shaped like them); `monitor_runs` is the one query that fetches them,
so a page's History section costs one search however long the history is. Nothing is
read from local files: the store is the record."""

from __future__ import annotations

from datetime import UTC, datetime

import mlflow

from mlcycle import config

DRIFT_SCORE_PREFIX = "drift_score."
CURRENT_DATA_TAG = "mlcycle.current_data"
DECISION_TAG = "mlcycle.promotion.decision"
LABELS_TAG = "mlcycle.monitor.labels"
NO_LABELS = "no labels"
# A history is read whole; this bounds the query for a model monitored every day for years.
MAX_RUNS = 5000


def monitor_runs(model_name: str, max_results: int = MAX_RUNS) -> list:
    """The model's FINISHED monitor runs in every experiment, oldest first."""
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=(
            f"tags.`{config.STEP_TAG}` = 'monitor' and tags.`mlcycle.model_name` = "
            f"'{_quoted(model_name)}' and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time ASC"],
        max_results=max_results,
        output_format="list",
    )


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")


def entry(run, primary: str) -> dict:
    """One run as a history entry (what `report/history.json` holds per run)."""
    metrics, tags = run.data.metrics, run.data.tags

    absent = tags.get(LABELS_TAG) == "absent"

    def metric(name: str) -> float | None:
        value = metrics.get(name)
        return None if value is None else float(value)

    return {
        "run_id": run.info.run_id,
        "time": datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(),
        "current_data": tags.get(CURRENT_DATA_TAG, ""),
        "drift_share": metric("drift_share"),
        "drift_scores": {
            name.removeprefix(DRIFT_SCORE_PREFIX): float(value)
            for name, value in sorted(metrics.items())
            if name.startswith(DRIFT_SCORE_PREFIX)
        },
        "primary_metric": f"current_test_{primary}",
        "champion": metric(f"champion_current_test_{primary}"),
        "challenger": metric(f"challenger_current_test_{primary}"),
        "champion_version": tags.get("mlcycle.champion_version", ""),
        "challenger_version": tags.get("mlcycle.challenger_version", ""),
        # A monitor run of a batch without labels decides nothing; its figure is estimated.
        "decision": tags.get(DECISION_TAG, "") or (NO_LABELS if absent else ""),
        "labels": tags.get(LABELS_TAG, "present"),
        "estimated": metric(f"estimated_{primary}"),
        "estimated_low": metric(f"estimated_{primary}_low"),
        "estimated_high": metric(f"estimated_{primary}_high"),
    }


def entries(runs, primary: str) -> list[dict]:
    """The history, oldest first, one entry per run (runs in any order)."""
    ordered = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
    return [entry(run, primary) for run in ordered]


def columns(history: list[dict]) -> list[str]:
    """Every column that has a drift score in some entry, in first-seen order."""
    seen: dict[str, None] = {}
    for item in history:
        for column in item["drift_scores"]:
            seen.setdefault(column, None)
    return list(seen)


def label(item: dict, index: int) -> str:
    """A short name for an entry on a chart axis: its data file, else its position."""
    name = item["current_data"].rsplit("/", 1)[-1]
    return name.removesuffix(".csv") or f"#{index + 1}"
