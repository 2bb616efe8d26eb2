"""The Evidently workspace monitor feeds, browsed with `make evidently-ui`.

One project per registered model, found by its name, and one snapshot per monitor run:
the very snapshot whose HTML is the report's `evidently.html`, so the workspace holds the
same column names as the report. Each snapshot's metadata names the MLflow run, the etl
run and the versions compared; the project's dashboard, made with the project, follows
the share of drifted features and each column's drift score from run to run.

A local workspace (Evidently 0.7) is a folder of JSON files, `<project id>/metadata.json`
and `<project id>/snapshots/<snapshot id>.json`, with nothing to stop two processes from
creating the same project twice. Finding or creating the project and adding the snapshot
hold an exclusive lock on a file of the workspace (`fcntl.flock`: the lock goes with the
process if it dies), so two monitors of one model at once share one project."""

from __future__ import annotations

import contextlib
import fcntl
import logging
from pathlib import Path

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.monitoring import drift
from mlcycle.monitoring.report import ROLES

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = config.DEFAULT_EVIDENTLY_WORKSPACE
LOCK_FILE = ".mlcycle.lock"
_DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


# In config, so that monitor's parameters check it without importing this module.
workspace_folder = config.evidently_workspace_folder


@contextlib.contextmanager
def locked(folder: Path):
    """Hold the workspace's lock: one process at a time finds, creates and writes."""
    with open(folder / LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def open_workspace(folder: Path):
    from evidently.ui.workspace import Workspace

    return Workspace.create(str(folder))


def project_for(workspace, model_name: str, columns: dict[str, list[str]] | None = None):
    """The model's project: the one named after it (the first made, if a person made
    several), else a new one whose dashboard follows `columns` (role -> column names, as
    `dashboard_panels` takes them). Call it holding the lock."""
    found = sorted(workspace.search_project(model_name), key=lambda p: str(p.id))
    if found:
        return found[0]
    project = workspace.create_project(
        model_name,
        description=f"Drift of registered model {model_name}: one snapshot per mlcycle "
        "monitor run (its MLflow run id in the snapshot's metadata)",
    )
    for panel in dashboard_panels(**(columns or {})):
        project.dashboard.add_panel(panel)
    log.info("Evidently project %s created for %s", project.id, model_name)
    return project


def dashboard_panels(
    features: tuple[str, ...] | list[str] = (),
    target: str | None = None,
    predictions: dict[str, str] | None = None,
):
    """The project's dashboard: the share of drifted features (last run, and over time),
    then the drift score of the target and predictions, then of each feature, run after
    run. `predictions` maps a role to its prediction column."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    share = PanelMetric(
        legend="share", metric=_DRIFTED_COUNT, metric_labels={"value_type": "share"}
    )
    panels = [
        counter_panel("Share of drifted features, last run", [share], size="half"),
        line_plot_panel("Share of drifted features", [share], size="half"),
    ]
    outputs = ([(f"target {target}", target)] if target else []) + [
        (f"{role} predictions", column) for role, column in (predictions or {}).items()
    ]
    score_note = "p-values drift below their threshold, distances at or above it (see each report)"
    if outputs:
        panels.append(
            line_plot_panel(
                "Drift score: target and predictions",
                [
                    PanelMetric(legend=legend, metric=_VALUE_DRIFT, metric_labels={"column": c})
                    for legend, c in outputs
                ],
                description=score_note,
                size="half",
            )
        )
    if features:
        panels.append(
            line_plot_panel(
                "Drift score per feature",
                [
                    PanelMetric(legend=c, metric=_VALUE_DRIFT, metric_labels={"column": c})
                    for c in features
                ],
                description=score_note,
                size="half",
            )
        )
    return panels


def dashboard_columns(schema) -> dict:
    """What the dashboard follows for this schema: its features, its target, and the
    prediction column monitor gives each role's model (`drift.prediction_column`)."""
    taken = set(schema.features) | {schema.target}
    return {
        "features": list(schema.features),
        "target": schema.target,
        "predictions": {role: drift.prediction_column(role, taken) for role in ROLES},
    }


def add_snapshot(
    folder: Path,
    model_name: str,
    snapshot,
    *,
    name: str,
    metadata: dict[str, str],
    columns: dict | None = None,
):
    """Add a copy of `snapshot` (named, with `metadata`) to the model's project; returns
    Evidently's SnapshotRef (its `id` and `project_id`). The report's own snapshot is
    left as it is."""
    from evidently.core.report import Snapshot

    model = snapshot.to_snapshot_model()
    model.metadata = {**model.metadata, **{k: str(v) for k, v in metadata.items()}}
    try:
        with locked(folder):
            workspace = open_workspace(folder)
            project = project_for(workspace, model_name, columns)
            ref = workspace.add_run(project.id, Snapshot.load_model(model), name=name)
    except (OSError, ValueError) as exc:  # a folder gone, a project file a person broke
        raise MlcycleError(
            f"parameter evidently_workspace: cannot add the snapshot to {folder}: {exc}"
        ) from exc
    log.info("Evidently snapshot %s in project %s (%s)", ref.id, ref.project_id, folder)
    return ref
