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
from mlcycle.monitoring.tables import metric_safe

DRIFT_SCORE_PREFIX = "drift_score."
CURRENT_DATA_TAG = "mlcycle.current_data"
DECISION_TAG = "mlcycle.promotion.decision"
LABELS_TAG = "mlcycle.monitor.labels"
SCORE_RUN_TAG = "mlcycle.score_run"
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
        # A batch's realised figure, once feedback brought its labels (`with_realised`).
        "score_run": tags.get(SCORE_RUN_TAG, "") if absent else "",
        "realised": None,
        "label_coverage": None,
    }


def entries(runs, primary: str, columns: list[str] = ()) -> list[dict]:
    """The history, oldest first, one entry per run (runs in any order). Each entry's
    `drift_columns` gives the column each drift score's key stands for: a name MLflow
    refuses in a metric is logged shortened, with a hash (`tables.metric_safe`), so the
    key alone does not say it; `columns` are the names known (the schema's features)."""
    known = {metric_safe(c).removeprefix(DRIFT_SCORE_PREFIX): c for c in columns}
    ordered = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
    out = [entry(run, primary) for run in ordered]
    for item in out:
        item["drift_columns"] = {key: known.get(key, key) for key in item["drift_scores"]}
    return out


def feedback_batch_runs(model_name: str, max_results: int = MAX_RUNS) -> list:
    """The model's FINISHED `feedback_batch` runs (one per scored batch a feedback
    touched, with its realised metrics) in every experiment, oldest first."""
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=(
            f"tags.`{config.STEP_TAG}` = 'feedback_batch' and tags.`mlcycle.model_name` = "
            f"'{_quoted(model_name)}' and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time ASC"],
        max_results=max_results,
        output_format="list",
    )


def with_realised(history: list[dict], feedback_runs, primary: str) -> list[dict]:
    """Each label-free entry with its batch's realised primary metric and label coverage,
    as the newest feedback of that batch measured them (None while no label came): the
    estimate and what the labels then showed, side by side. `feedback_runs` are
    `feedback_batch` runs in any order."""
    realised: dict[str, tuple[float | None, float | None]] = {}
    for run in sorted(feedback_runs, key=lambda r: (r.info.start_time, r.info.run_id)):
        batch = run.data.tags.get(SCORE_RUN_TAG)
        value = run.data.metrics.get(f"realised_{primary}")
        if batch and value is not None:
            realised[batch] = (float(value), run.data.metrics.get("label_coverage"))
    for item in history:
        if item.get("score_run") in realised:
            item["realised"], item["label_coverage"] = realised[item["score_run"]]
    return history


def of_model(model_name: str, run_id: str, primary: str, columns: list[str] = ()) -> list[dict]:
    """The model's earlier finished monitor runs and this one (its metrics logged), oldest
    first, label-free ones with their realised figures: two queries, whatever the length."""
    earlier = [r for r in monitor_runs(model_name) if r.info.run_id != run_id]
    history = entries([*earlier, mlflow.get_run(run_id)], primary, columns)
    return with_realised(history, feedback_batch_runs(model_name), primary)


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


def section(entries: list[dict], moves: list[dict], title: str) -> dict:
    """A page's History section: the entries, their chart (captioned `title`) and the
    ledger's alias moves."""
    from mlcycle.monitoring import charts

    figure = charts.monitor_history_figure(entries)
    return {
        "entries": entries,
        "charts": [] if figure is None else [{"title": title, "uri": charts.figure_uri(figure)}],
        "moves": moves,
    }
