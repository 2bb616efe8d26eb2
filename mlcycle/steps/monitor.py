"""The monitor step: drift, champion vs challenger, and (optionally) promotion.

Reads an etl run's splits and the models behind two URIs (by default
models:/NAME@champion and models:/NAME@challenger). Writes report.html and Evidently's
HTML to OUTPUT/<model_name>/<timestamp>/ and to the run's artifacts under report/,
OUTPUT/<model_name>/latest.html, drift and performance metrics, and the promotion
decision as tags on the run and on the challenger's model version. A missing challenger
(or champion) is reported, not an error: the drift report is made whatever exists.

The aliases a promotion moves are planned once (`aliases.promotion`) from the
registry as it was read when the models were loaded: the report shows that plan and the
step applies that same plan, last, once the report and its artifacts are logged (once:
`mlcycle.monitoring.publish`), so a failure before leaves the aliases where they were; a
plan refused because the aliases moved meanwhile rewrites the same page to say so. What
the run compares and decides is `mlcycle.monitoring.comparison`."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import mlflow

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import alerts, aliases, ledger, registry
from mlcycle.models.features import build_preprocessor
from mlcycle.monitoring import (
    charts,
    evidently_workspace,
    gate,
    history,
    promotion,
    publish,
    report,
    unlabelled,
)
from mlcycle.monitoring.comparison import (
    compared_champion,
    decide,
    describe_version,
    intervals,
    measure_drift,
    predictors,
    relationship_evidence,
    score_model,
)
from mlcycle.monitoring.drift import AUTO_SAMPLE_SIZE
from mlcycle.monitoring.report import ModelResult
from mlcycle.params import ALERT_URL_HELP, check, etl_run_param, model_name_param, param
from mlcycle.steps.etl import open_etl

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
    score_run: str = param(
        "",
        "a score run whose batch has no labels yet: monitor it without labels (drift, "
        "prediction drift, estimated performance; never promotes); empty: the etl run's "
        "labelled rows",
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


# Prepare: which models, read from the registry, and what the monitor found.


def model_uris(params: MonitorParams) -> dict[str, str]:
    """role -> URI: the one given, else the registered model's alias of that role."""
    return {
        "champion": params.champion or registry.alias_uri(params.model_name, config.CHAMPION),
        "challenger": params.challenger or registry.alias_uri(params.model_name, config.CHALLENGER),
    }


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


def planned_moves(
    decision, state: aliases.State, results: dict[str, ModelResult], model_name: str
) -> list[aliases.Move]:
    """The alias moves of a promotion; none when the decision does not promote."""
    challenger = results["challenger"].version
    if decision.status != promotion.PROMOTED or challenger is None:
        return []
    return aliases.promotion(state, compared_champion(results, model_name), challenger)


def aliases_after(
    results: dict[str, ModelResult], moves: list[aliases.Move], model_name: str
) -> dict[str, list[str]]:
    """role -> aliases as the moves leave them, for this model's versions (another model's
    aliases never move)."""
    ours = {r.version: r.aliases for r in results.values() if r.name == model_name and r.version}
    after = aliases.after(ours, moves)
    return {
        role: after.get(r.version, []) if r.name == model_name and r.version else list(r.aliases)
        for role, r in results.items()
    }


def prepare(params: MonitorParams, run, etl) -> tuple[publish.Outcome, list[aliases.Move]]:
    """Load and score both models, decide, plan the alias moves, measure drift: the
    outcome to publish and the moves to apply after."""
    schema, splits = etl.schema, etl.splits
    frames = dict(splits.items())
    loaded = {role: load_model(role, uri) for role, uri in model_uris(params).items()}
    state = aliases.read_state(params.model_name)
    results = {
        role: score_model(result, model, schema, frames) for role, (result, model) in loaded.items()
    }
    bootstrap = intervals(params, schema.task, schema.target, frames, results)
    evidence = relationship_evidence(params, schema, frames, results)
    decision = decide(params, schema.task, results, bootstrap, evidence)
    picture = None
    if bootstrap:
        figure = gate.bootstrap_figure(bootstrap["current_test"], params.min_improvement)
        picture = charts.figure_uri(figure)
    moves = planned_moves(decision, state, results, params.model_name)
    models, owners = predictors(schema, loaded, results)
    drift_result, drift_error = measure_drift(schema, splits, models, params.sample_size)
    outcome = publish.Outcome(
        params=params,
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        etl_run=etl.run_id,
        etl_params=etl.params,
        schema=schema,
        splits=splits,
        results=results,
        decision=decision,
        moved=aliases.describe(moves),
        aliases_after=aliases_after(results, moves, params.model_name),
        ledger_moves=ledger.listed(params.model_name),
        drift_result=drift_result,
        drift_error=drift_error,
        owners=owners,
        bootstrap=bootstrap,
        gate_picture=picture,
        evidence=evidence,
    )
    return outcome, moves


# Log, then execute.


def tag_challenger_version(decision, results: dict[str, ModelResult]) -> None:
    """The decision on the challenger's version too, so the registry says why."""
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


def execute(params: MonitorParams) -> dict[str, Path]:
    """Everything monitor does, in the active run; returns the report's paths."""
    if params.score_run:
        champion = params.champion or registry.alias_uri(params.model_name, config.CHAMPION)
        paths = unlabelled.monitor_batch(
            score_run=params.score_run,
            model_name=params.model_name,
            best=registry.load_champion(champion, params.model_name),
            etl_run=params.etl_run,
            output=params.output,
            sample_size=params.sample_size,
            moves=ledger.listed(params.model_name),
            preprocessor=build_preprocessor,
        )
        # Its metrics and tags are logged: decay (the band's top under the reference) and
        # drift are posted as for a labelled run.
        alerts.report_monitor_run(params.alert_url, mlflow.active_run().info.run_id)
        return paths
    run = mlflow.active_run()
    etl = open_etl(params.etl_run, {"mlcycle.model_name": params.model_name})
    mlflow.set_tag(history.CURRENT_DATA_TAG, etl.params.get("current", ""))
    outcome, moves = prepare(params, run, etl)
    # Published once, and the aliases move last: once they have moved, nothing is left
    # that can fail, so a run that moved an alias ends FINISHED.
    published = publish.publish(outcome)
    tag_challenger_version(outcome.decision, outcome.results)
    meta = publish.snapshot_metadata(run.info.run_id, etl.run_id, outcome.results)
    publish.log_snapshot(params, outcome.drift_result, etl.schema, run.info.run_id, meta)
    try:
        aliases.apply(params.model_name, moves, reason=f"monitor: {outcome.decision.reason}")
    except aliases.StaleState as exc:
        # Another run moved the aliases since they were read: this decision compared
        # models that may no longer be the ones in place. Refused, and the page says so.
        log.warning("promotion not applied: %s", exc)
        decision, paths = publish.refused(outcome, published, exc)
        tag_challenger_version(decision, outcome.results)
    else:
        paths = published.paths
    alerts.report_monitor_run(params.alert_url, run.info.run_id)
    return paths
