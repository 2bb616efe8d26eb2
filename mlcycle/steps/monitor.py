"""The monitor step: drift, champion vs challenger, and (optionally) promotion.

Reads an etl run's splits and the models behind two URIs (by default
models:/NAME@champion and models:/NAME@challenger). Writes report.html and Evidently's
HTML to OUTPUT/<model_name>/<timestamp>/ and to the run's artifacts under report/,
OUTPUT/<model_name>/latest.html, drift and performance metrics, and the promotion
decision as tags on the run and on the challenger's model version. A missing challenger
(or champion) is reported, not an error: the drift report is made whatever exists.

The aliases a promotion moves are planned once (`mlcycle.aliases.promotion`) from the
registry as it was read when the models were loaded: the report shows that plan and the
step applies that same plan, last, once the report and its artifacts are logged, so a
failure before leaves the aliases where they were."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import mlflow

from mlcycle import (
    alerts,
    aliases,
    charts,
    config,
    drift,
    evidently_workspace,
    gate,
    history,
    ledger,
    promotion,
    quality,
    registry,
    report,
    tables,
)
from mlcycle.datasets import load_splits
from mlcycle.drift import AUTO_SAMPLE_SIZE
from mlcycle.errors import MlcycleError
from mlcycle.evaluate import score_frames
from mlcycle.metrics import PRIMARY
from mlcycle.params import ALERT_URL_HELP, check, etl_run_param, model_name_param, param
from mlcycle.report import ModelResult
from mlcycle.steps.etl import resolve_etl_run

log = logging.getLogger("mlcycle.monitor")

AUTO = "auto"


@dataclass(frozen=True)
class MonitorParams:
    etl_run: str = etl_run_param()
    model_name: str = model_name_param()
    champion: str = param("", "model URI (default: models:/NAME@champion)")
    challenger: str = param("", "model URI (default: models:/NAME@challenger)")
    output: str = param("reports/", "report folder; relative to the project root")
    promote: bool = param(False, "move the champion alias when the challenger qualifies")
    min_improvement: float = param(
        0.0,
        "absolute gain needed on current_test's primary metric (R² or F1)",
        minimum=0,
    )
    tolerance: str = param(
        "auto",
        "absolute loss allowed on reference_test's primary metric; auto: at most the gain "
        "on current_test",
    )
    sample_size: int = param(
        0, f"rows per side for drift; 0: all up to {AUTO_SAMPLE_SIZE:,}", minimum=0
    )
    confidence: float = param(
        0.95,
        "the promotion gate judges a paired bootstrap of the difference at this one-sided "
        "confidence; 0: the point estimates alone",
        minimum=0,
    )
    evidently_workspace: str = param(
        evidently_workspace.DEFAULT_WORKSPACE,
        "Evidently workspace that gets the run's snapshot (make evidently-ui); relative to "
        "the project root; empty: none",
    )
    alert_url: str = param("", ALERT_URL_HELP)

    def validate(self) -> MonitorParams:
        """Every check a value allows before any run opens, the report folder included;
        the tolerance comes back spelled as the step logs it ('auto' or a number)."""
        tolerance = parse_tolerance(self.tolerance)
        _check_numbers(
            min_improvement=self.min_improvement,
            sample_size=self.sample_size,
            **({} if tolerance is None else {"tolerance": tolerance}),
        )
        checked = dataclasses.replace(self, tolerance=AUTO if tolerance is None else str(tolerance))
        check(checked)
        if not self.confidence < 1:
            raise MlcycleError(
                f"parameter confidence must be below 1 (0: point rule), got {self.confidence}"
            )
        report.output_folder(self.output, self.model_name)
        evidently_workspace.workspace_folder(self.evidently_workspace)
        return checked

    @property
    def gate_tolerance(self) -> float | None:
        """The tolerance the gate applies: None is auto (the gain on current_test)."""
        return parse_tolerance(self.tolerance)


def parse_tolerance(text: str) -> float | None:
    """'auto' (or empty) -> None; otherwise a number."""
    if str(text).strip().lower() in (AUTO, ""):
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise MlcycleError(
            f"parameter tolerance must be auto or a number >= 0, got {text!r}"
        ) from exc


def _check_numbers(**values) -> None:
    for name, value in values.items():
        if not math.isfinite(value) or value < 0:
            raise MlcycleError(f"parameter {name} must be a number >= 0, got {value}")


# Pure parts: which models, how they are described, what the gate is given, what is logged.


def model_uris(params: MonitorParams) -> dict[str, str]:
    """role -> URI: the one given, else the registered model's alias of that role."""
    return {
        "champion": params.champion or registry.alias_uri(params.model_name, config.CHAMPION),
        "challenger": params.challenger or registry.alias_uri(params.model_name, config.CHALLENGER),
    }


def describe_version(result: ModelResult, version) -> ModelResult:
    """Fill a result's identity from the registry version its URI names."""
    result.name, result.version = version.name, str(version.version)
    result.run_id = version.run_id
    result.aliases = sorted(getattr(version, "aliases", []) or [])
    result.family = (version.tags or {}).get("mlcycle.family")
    return result


def missing(result: ModelResult) -> bool:
    """Absent from the registry: reported, but not a failure of that model."""
    return bool(result.error and result.error.startswith("missing"))


def gate_inputs(results: dict[str, ModelResult], model_name: str) -> dict:
    """What `promotion.decide` is told about the two models, beyond the gate's settings."""
    champion, challenger = results["champion"], results["challenger"]
    same = champion.version is not None and (champion.name, champion.version) == (
        challenger.name,
        challenger.version,
    )
    challenger_error = None if missing(challenger) else challenger.error
    if challenger.ok and challenger.name != model_name:
        # An alias can only point at a version of the same registered model.
        challenger_error = (
            f"{challenger.uri} is not a registered version of {model_name}, "
            "so it cannot become its champion"
        )
    return {
        "champion": champion.metrics if champion.ok else None,
        "challenger": challenger.metrics if challenger.ok else None,
        "champion_error": None if missing(champion) else champion.error,
        "challenger_error": challenger_error,
        "same_version": same,
    }


GATE_SPLITS = ("current_test", "reference_test")
GATE_RESAMPLES = 2000


def intervals(
    params: MonitorParams, task: str, target: str, frames, results: dict[str, ModelResult]
) -> dict | None:
    """The paired bootstrap of the primary metric's difference on both test splits (the
    same resampled rows for both models); None when the gate judges points alone
    (confidence 0) or a model did not score."""
    champion, challenger = results["champion"], results["challenger"]
    if not params.confidence or not (champion.ok and challenger.ok):
        return None
    return {
        split: gate.paired_bootstrap(
            task,
            frames[split][target].to_numpy(),
            champion.predictions[split],
            challenger.predictions[split],
            n_resamples=GATE_RESAMPLES,
            confidence=params.confidence,
        )
        for split in GATE_SPLITS
    }


def decide(
    params: MonitorParams,
    task: str,
    results: dict[str, ModelResult],
    bootstrap: dict | None = None,
):
    """The gate's decision on these results (at the bootstrap's bounds when given), with
    its reasons."""
    return promotion.decide(
        task,
        min_improvement=params.min_improvement,
        tolerance=params.gate_tolerance,
        requested=params.promote,
        intervals=bootstrap,
        **gate_inputs(results, params.model_name),
    )


def gate_metrics(bootstrap: dict | None) -> dict[str, float]:
    """gate_delta and its bounds on current_test, as the gate judged them."""
    if not bootstrap:
        return {}
    current = bootstrap["current_test"]
    return {
        "gate_delta": current.delta,
        "gate_delta_ci_low": current.low,
        "gate_delta_ci_high": current.high,
    }


def compared_champion(results: dict[str, ModelResult], model_name: str) -> str | None:
    """The champion version the challenger was compared with, when it is one of this
    model's (another model's champion cannot become this model's previous)."""
    champion = results["champion"]
    return champion.version if champion.name == model_name else None


def planned_moves(
    decision, state: aliases.State, results: dict[str, ModelResult], model_name: str
) -> list[aliases.Move]:
    """The alias moves of a promotion; none when the decision does not promote."""
    challenger = results["challenger"].version
    if decision.status != promotion.PROMOTED or challenger is None:
        return []
    return aliases.promotion(state, compared_champion(results, model_name), challenger)


def show_aliases_after(
    results: dict[str, ModelResult], moves: list[aliases.Move], model_name: str
) -> None:
    """The report's table and provenance show this model's aliases as the moves leave them."""
    ours = [r for r in results.values() if r.name == model_name and r.version is not None]
    after = aliases.after({r.version: r.aliases for r in ours}, moves)
    for result in ours:
        result.aliases = after.get(result.version, [])


def predictors(schema, loaded: dict, results: dict[str, ModelResult]) -> tuple[dict, dict]:
    """(column -> model, column -> role) of the models that scored: their predictions are
    drift columns named apart from every feature and the target."""
    taken = set(schema.features) | {schema.target}
    models, owners = {}, {}
    for role, (_, model) in loaded.items():
        if model is not None and results[role].ok:
            column = drift.prediction_column(role, taken)
            models[column], owners[column] = model, role
    return models, owners


def step_metrics(
    drift_result, results: dict[str, ModelResult], decision, owners: dict | None = None
) -> dict[str, float]:
    """Drift (overall and per column: `mlcycle.tables`), both models' finite metrics
    (prefixed by role) and whether it promoted."""
    numbers = {"promoted": float(decision.status == promotion.PROMOTED)}
    if drift_result is not None:
        numbers.update(
            {
                "drift_share": drift_result.drift_share,
                "n_drifted_columns": float(drift_result.n_drifted),
                "dataset_drift": float(drift_result.dataset_drift),
                "drift_sample_rows": float(drift_result.sample_rows["current"]),
            }
        )
        for column in drift_result.by_role("target"):
            numbers["target_drift"] = float(column.drifted)
            numbers["target_drift_score"] = column.score
        numbers.update(tables.drift_metrics(drift_result, owners))
    for role, result in results.items():
        numbers.update({f"{role}_{k}": v for k, v in result.metrics.items() if math.isfinite(v)})
    return numbers


def gate_settings(params: MonitorParams) -> dict:
    """The gate as the report states it."""
    tolerance = params.gate_tolerance
    return {
        "promote": params.promote,
        "confidence_text": f"{params.confidence:.0%}",
        "resamples": f"{GATE_RESAMPLES:,}",
        "min_improvement": params.min_improvement,
        "tolerance": "its gain on current_test"
        if tolerance is None
        else f"{tolerance:g} (absolute)",
    }


def provenance(
    *,
    run_id: str,
    experiment_id: str,
    etl_run: str,
    etl_params: dict,
    results: dict[str, ModelResult],
    sample_size: int,
    tracking_uri: str,
) -> list[tuple[str, str]]:
    """The report's provenance rows: which runs, data, models and store it was made from."""
    rows = [
        ("monitor run", run_id),
        ("experiment", experiment_id),
        ("etl run", etl_run),
        ("reference data", etl_params.get("reference", "")),
        ("current data", etl_params.get("current", "")),
    ]
    for role, r in results.items():
        detail = r.uri + (f" = version {r.version}" if r.version else "")
        if r.aliases:
            detail += f" (aliases: {', '.join(r.aliases)})"
        if r.run_id:
            detail += f", trained in run {r.run_id}"
        rows.append((role, detail))
    rows += [
        ("drift sample_size", str(sample_size or f"auto (≤ {AUTO_SAMPLE_SIZE:,})")),
        ("tracking store", tracking_uri),
    ]
    return rows


def decision_tags(decision, results: dict[str, ModelResult], report_path: Path) -> dict:
    """The run's tags: the decision, the report's path and the versions compared."""
    return {
        **promotion.tags(decision),
        "mlcycle.report": str(report_path),
        **{f"mlcycle.{role}_version": r.version for role, r in results.items() if r.version},
    }


# Reading models and data, with MLflow.


def load_model(role: str, uri: str) -> tuple[ModelResult, object]:
    """(result, model); the model is None and the result says why when it cannot load."""
    result = ModelResult(role=role, uri=uri)
    try:
        version = registry.resolve_version(uri)
    except MlcycleError as exc:
        log.info("%s %s: %s", role, uri, exc)
        result.error = "missing: not in the registry"
        return result, None
    if version is not None:
        describe_version(result, version)
    try:
        return result, registry.load_pyfunc(uri)
    except MlcycleError as exc:
        log.warning("%s: %s", role, exc)
        result.error = f"failed to load: {exc}"
        return result, None


def score_model(result: ModelResult, model, schema, frames) -> ModelResult:
    """The model's scores on the test splits; a model that fails says how in the report."""
    if model is None:
        return result
    try:
        return result.with_scores(score_frames(model, schema, frames))
    except Exception as exc:  # noqa: BLE001 - any model may fail; the report says how
        log.exception("%s %s failed to score", result.role, result.uri)
        result.metrics.clear()
        result.error = f"failed to score: {type(exc).__name__}: {exc}"
        return result


def measure_drift(schema, splits, models: dict, sample_size: int):
    """(drift result, error): an Evidently failure is reported in the page rather than
    losing the performance comparison."""
    reference, current = drift.reference_and_current(splits)
    try:
        return drift.run_drift(reference, current, schema, models, sample_size), None
    except MlcycleError:
        raise
    except Exception as exc:  # noqa: BLE001 - keep the rest of the report
        log.exception("drift could not be measured")
        return None, f"drift could not be measured: {type(exc).__name__}: {exc}"


# Logging, then the step.


def log_report(folder: Path) -> None:
    mlflow.log_artifacts(str(folder), "report")


def not_applied(decision: promotion.Decision, exc: Exception) -> promotion.Decision:
    """The decision as it ended when its alias moves could not be carried out."""
    reason = f"qualified, but the aliases did not move: {exc}; {decision.reason}"
    return dataclasses.replace(decision, promote=False, reason=reason)


def snapshot_metadata(run_id: str, etl_run: str, results: dict[str, ModelResult]) -> dict:
    """What an Evidently snapshot says about where it comes from: the runs and models."""
    meta = {"mlflow_run_id": run_id, "etl_run_id": etl_run}
    for role, r in results.items():
        meta[f"{role}_uri"] = r.uri
        if r.version:
            meta[f"{role}_version"] = r.version
    return meta


def log_snapshot(params: MonitorParams, drift_result, schema, run_id: str, meta: dict) -> None:
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


def log_decision(decision, results: dict[str, ModelResult], report_path: Path) -> None:
    """Tags on the run, and on the challenger's version so the registry says why."""
    mlflow.set_tags(decision_tags(decision, results, report_path))
    challenger = results["challenger"]
    if challenger.version is not None:
        registry.tag_version(
            challenger.name,
            challenger.version,
            {
                **promotion.tags(decision),
                "mlcycle.promotion.monitor_run": mlflow.active_run().info.run_id,
            },
        )


HISTORY_FILE = "history.json"


def model_history(model_name: str, run_id: str, task: str) -> list[dict]:
    """The model's earlier finished monitor runs and this one (its metrics logged), oldest
    first: one query, whatever the history's length."""
    earlier = [r for r in history.monitor_runs(model_name) if r.info.run_id != run_id]
    return history.entries([*earlier, mlflow.get_run(run_id)], PRIMARY[task])


def history_context(past: list[dict], model_name: str) -> dict:
    """The report's History section: the entries, their charts and the ledger's moves."""
    figure = charts.monitor_history_figure(past)
    title = (
        "share of features drifted, drift score per feature (rows) and both models' "
        "metric on current_test, run after run"
    )
    moves = [
        {
            "time": e.time.strftime("%Y-%m-%d %H:%M:%S"),
            "alias": e.alias,
            "from_version": e.from_version,
            "to_version": e.to_version,
            "reason": e.reason,
        }
        for e in ledger.history(model_name)
    ]
    return {
        "entries": past,
        "charts": [] if figure is None else [{"title": title, "uri": charts.figure_uri(figure)}],
        "moves": moves,
    }


def execute(params: MonitorParams) -> dict[str, Path]:
    """Everything monitor does, in the active run; returns the report's paths."""
    run = mlflow.active_run()
    etl_run = resolve_etl_run(params.etl_run)
    etl_params = mlflow.get_run(etl_run).data.params
    mlflow.set_tags(
        {
            "mlcycle.etl_run": etl_run,
            "mlcycle.model_name": params.model_name,
            history.CURRENT_DATA_TAG: etl_params.get("current", ""),
        }
    )
    schema, splits = load_splits(etl_run)
    frames = dict(splits.items())
    loaded = {role: load_model(role, uri) for role, uri in model_uris(params).items()}
    state = aliases.read_state(params.model_name)
    results = {
        role: score_model(result, model, schema, frames) for role, (result, model) in loaded.items()
    }
    bootstrap = intervals(params, schema.task, schema.target, frames, results)
    decision = decide(params, schema.task, results, bootstrap)
    picture = None
    if bootstrap:
        figure = gate.bootstrap_figure(bootstrap["current_test"], params.min_improvement)
        picture = charts.figure_uri(figure)
    moves = planned_moves(decision, state, results, params.model_name)
    models, owners = predictors(schema, loaded, results)
    drift_result, drift_error = measure_drift(schema, splits, models, params.sample_size)
    aliases_read = {role: list(r.aliases) for role, r in results.items()}

    def publish(decision, moves) -> dict[str, Path]:
        """The report, its artifacts, the metrics and the decision's tags, as of `moves`."""
        for role, result in results.items():
            result.aliases = list(aliases_read[role])
        show_aliases_after(results, moves, params.model_name)
        mlflow.log_metrics(
            {**step_metrics(drift_result, results, decision, owners), **gate_metrics(bootstrap)}
        )
        past = model_history(params.model_name, run.info.run_id, schema.task)
        # This run's decision and versions are tagged once the page is written.
        past[-1].update(
            decision=decision.status,
            champion_version=results["champion"].version or "",
            challenger_version=results["challenger"].version or "",
        )
        context = report.assemble(
            model_name=params.model_name,
            schema=schema,
            frames=frames,
            models=results,
            decision=decision,
            moved=aliases.describe(moves),
            quality=quality.by_feature(*drift.reference_and_current(splits), schema),
            drift=drift_result,
            drift_error=drift_error,
            prediction_owner=owners,
            gate=gate_settings(params),
            provenance=provenance(
                run_id=run.info.run_id,
                experiment_id=run.info.experiment_id,
                etl_run=etl_run,
                etl_params=etl_params,
                results=results,
                sample_size=params.sample_size,
                tracking_uri=config.tracking_uri(),
            ),
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            gate_picture=picture,
            history=history_context(past, params.model_name),
        )
        tables.log_tables(drift_result, context["comparison"], owners)
        folder = report.report_folder(params.output, params.model_name, report.timestamp())
        paths = report.write_report(
            folder, context, drift_result.snapshot if drift_result else None
        )
        (folder / HISTORY_FILE).write_text(json.dumps(past, indent=2, ensure_ascii=False))
        log_report(folder)
        log_decision(decision, results, paths["report"])
        return paths

    # The decision is published first and the aliases move last: once they have moved,
    # nothing is left that can fail, so a run that moved an alias ends FINISHED.
    paths = publish(decision, moves)
    meta = snapshot_metadata(run.info.run_id, etl_run, results)
    log_snapshot(params, drift_result, schema, run.info.run_id, meta)
    try:
        aliases.apply(params.model_name, moves, reason=f"monitor: {decision.reason}")
    except aliases.StaleState as exc:
        # Another run moved the aliases since they were read: this decision compared
        # models that may no longer be the ones in place. Refused, and the page says so.
        log.warning("promotion not applied: %s", exc)
        paths = publish(not_applied(decision, exc), [])
    alerts.report_monitor_run(params.alert_url, run.info.run_id)
    return paths
