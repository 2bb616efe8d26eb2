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

import logging
from pathlib import Path

import mlflow

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import alerts, aliases, ledger, registry
from mlcycle.models.features import build_preprocessor
from mlcycle.monitoring import (
    charts,
    gate,
    history,
    promotion,
    publish,
    unlabelled,
)
from mlcycle.monitoring.comparison import (
    GATE_SPLITS,
    compared_champion,
    decide,
    describe_version,
    intervals,
    measure_drift,
    predictors,
    relationship_evidence,
    score_model,
)
from mlcycle.monitoring.report import ModelResult
from mlcycle.steps.etl import open_etl
from mlcycle.steps.params.monitor import MonitorParams

log = logging.getLogger("mlcycle.monitor")


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
    targets = {split: frames[split][schema.target] for split in GATE_SPLITS}
    decision = decide(params, schema.task, results, bootstrap, evidence, targets)
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
