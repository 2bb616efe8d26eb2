"""Publishing a monitor run, once: its metrics, the report (page, Evidently's HTML, the
model's history) in a folder of its own and in the run's artifacts, the decision's tags
on the run, and the drift snapshot in the Evidently workspace.

`publish` runs once, over an `Outcome` fixed before anything is written; when the alias
moves it shows are then refused (another run moved the aliases first), `refused` rewrites
the same folder's page with the decision as it ended, re-tags the run and corrects the
one number that changes (`promoted`): the other metrics are not logged again."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow

from mlcycle import config
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.monitoring import (
    drift,
    evidently_workspace,
    history,
    promotion,
    quality,
    report,
    tables,
)
from mlcycle.monitoring.comparison import (
    INCUMBENT_TAG,
    RELATIONSHIP_TAG,
    decision_tags,
    gate_metrics,
    gate_settings,
    not_applied,
    provenance,
    relationship_status,
    step_metrics,
)
from mlcycle.monitoring.metrics import PRIMARY
from mlcycle.monitoring.report import ModelResult


@dataclass(frozen=True)
class Outcome:
    """What a monitor run found, fixed before anything is published. `results` hold the
    aliases as read; `aliases_after` (role -> aliases) and `moved` show the planned alias
    moves as done, and `ledger_moves` the ledger's record (lifecycle's, read by the step)."""

    params: Any  # the step's MonitorParams
    run_id: str
    experiment_id: str
    etl_run: str
    etl_params: dict
    schema: Schema
    splits: Splits
    results: dict[str, ModelResult]
    decision: promotion.Decision
    moved: str | None
    aliases_after: dict[str, list[str]]
    ledger_moves: list[dict]
    drift_result: Any = None
    drift_error: str | None = None
    owners: dict | None = None
    bootstrap: dict | None = None
    gate_picture: str | None = None
    # `mlcycle.monitoring.relationship.Evidence`, None when not measured.
    evidence: Any = None


@dataclass(frozen=True)
class Published:
    folder: Path
    paths: dict[str, Path]
    past: list[dict]


def publish(outcome: Outcome) -> Published:
    """The metrics, the report in a new folder and in the run's artifacts, and the
    decision's tags on the run; as if the planned alias moves were done."""
    o = outcome
    results = _shown(o.results, o.aliases_after)
    mlflow.log_metrics(
        {
            **step_metrics(o.drift_result, results, o.decision, o.owners),
            **gate_metrics(o.bootstrap, o.evidence, o.decision),
        }
    )
    mlflow.set_tag(RELATIONSHIP_TAG, relationship_status(o.evidence))
    mlflow.set_tag(INCUMBENT_TAG, str(o.params.incumbent).lower())
    past = model_history(o.params.model_name, o.run_id, o.schema.task, o.schema.features)
    # This run's decision and versions are tagged once the page is written.
    past[-1].update(
        decision=o.decision.status,
        champion_version=results["champion"].version or "",
        challenger_version=results["challenger"].version or "",
    )
    context = _context(o, results, o.decision, o.moved, past)
    tables.log_tables(o.drift_result, context["comparison"], o.owners)
    folder = report.report_folder(o.params.output, o.params.model_name, report.timestamp())
    return Published(folder, _write(folder, o, context, o.decision, results, past), past)


def refused(outcome: Outcome, published: Published, exc: Exception) -> tuple[Any, dict]:
    """(the decision as it ended, the report's paths) when the alias moves were refused:
    the same folder's page rewritten with the aliases as read, the run re-tagged."""
    decision = not_applied(outcome.decision, exc)
    results = _shown(outcome.results, {r: list(m.aliases) for r, m in outcome.results.items()})
    mlflow.log_metric("promoted", 0.0)
    past = [*published.past[:-1], {**published.past[-1], "decision": decision.status}]
    context = _context(outcome, results, decision, None, past)
    return decision, _write(published.folder, outcome, context, decision, results, past)


def _shown(results: dict[str, ModelResult], aliases: dict[str, list[str]]) -> dict:
    return {
        role: dataclasses.replace(r, aliases=list(aliases[role])) for role, r in results.items()
    }


def _context(o: Outcome, results: dict, decision, moved: str | None, past: list[dict]) -> dict:
    return report.assemble(
        model_name=o.params.model_name,
        schema=o.schema,
        frames=dict(o.splits.items()),
        models=results,
        decision=decision,
        moved=moved,
        quality=quality.by_feature(*drift.reference_and_current(o.splits), o.schema),
        drift=o.drift_result,
        drift_error=o.drift_error,
        prediction_owner=o.owners,
        gate=gate_settings(o.params, o.evidence),
        provenance=provenance(
            run_id=o.run_id,
            experiment_id=o.experiment_id,
            etl_run=o.etl_run,
            etl_params=o.etl_params,
            results=results,
            sample_size=o.params.sample_size,
            tracking_uri=config.tracking_uri(),
        ),
        run_id=o.run_id,
        experiment_id=o.experiment_id,
        gate_picture=o.gate_picture,
        history=history_context(past, o.ledger_moves),
    )


def _write(folder: Path, o: Outcome, context: dict, decision, results, past) -> dict:
    """The page, Evidently's HTML and history.json in the folder, the folder in the run's
    artifacts, the decision's tags on the run."""
    snapshot = o.drift_result.snapshot if o.drift_result else None
    paths = report.write_report(folder, context, snapshot)
    (folder / HISTORY_FILE).write_text(json.dumps(past, indent=2, ensure_ascii=False))
    log_report(folder)
    mlflow.set_tags(decision_tags(decision, results, paths["report"]))
    return paths


def snapshot_metadata(run_id: str, etl_run: str, results: dict[str, ModelResult]) -> dict:
    """What an Evidently snapshot says about where it comes from: the runs and models."""
    meta = {"mlflow_run_id": run_id, "etl_run_id": etl_run}
    for role, r in results.items():
        meta[f"{role}_uri"] = r.uri
        if r.version:
            meta[f"{role}_version"] = r.version
    return meta


def log_snapshot(params, drift_result, schema, run_id: str, meta: dict) -> None:
    """The drift snapshot into the Evidently workspace (unless turned off or drift was not
    measured), and where it went as tags of the run."""
    folder = evidently_workspace.workspace_folder(params.evidently_workspace)
    if folder is None or drift_result is None:
        return
    ref = evidently_workspace.add_snapshot(
        folder,
        params.model_name,
        drift_result.snapshot,
        name=f"monitor run {run_id}",
        metadata=meta,
        columns=evidently_workspace.dashboard_columns(schema),
    )
    mlflow.set_tags(
        {
            "mlcycle.evidently_workspace": str(folder),
            "mlcycle.evidently_project": str(ref.project_id),
            "mlcycle.evidently_snapshot": str(ref.id),
        }
    )


HISTORY_FILE = "history.json"


def model_history(model_name: str, run_id: str, task: str, columns=()) -> list[dict]:
    """The model's history with this run (`mlcycle.monitoring.history.of_model`)."""
    return history.of_model(model_name, run_id, PRIMARY[task], columns)


def history_context(past: list[dict], moves: list[dict]) -> dict:
    """The report's History section: the entries, their charts and the ledger's moves
    (read by the step: `ledger_moves`)."""
    title = (
        "share of features drifted, drift score per feature (rows) and both models' "
        "metric on current_test (a batch without labels: the champion's estimate, open "
        "squares, and its realised figure once the labels came, filled), run after run"
    )
    return history.section(past, moves, title)


def log_report(folder: Path) -> None:
    mlflow.log_artifacts(str(folder), "report")
