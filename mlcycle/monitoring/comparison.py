"""What a monitor run finds, as pure functions over its results: the models' identities
and scores, what the promotion gate is given and decides, the drift columns of their
predictions, the run's metrics and tags, and the report's gate and provenance rows.

`params` below are the monitor step's parameters (`mlcycle.steps.monitor.MonitorParams`);
`results` maps a role (champion, challenger) to its `report.ModelResult`."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

from mlcycle.errors import MlcycleError
from mlcycle.monitoring import drift, gate, promotion, relationship, tables
from mlcycle.monitoring.drift import AUTO_SAMPLE_SIZE
from mlcycle.monitoring.evaluate import score_frames
from mlcycle.monitoring.report import ModelResult

log = logging.getLogger("mlcycle.monitor")


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
    params, task: str, target: str, frames, results: dict[str, ModelResult]
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


def relationship_evidence(params, schema, frames, results: dict[str, ModelResult]):
    """Whether the relationship changed from reference to current
    (`mlcycle.monitoring.relationship`), measured on the gate's own draws when it has two
    models to judge; None otherwise."""
    if not (results["champion"].ok and results["challenger"].ok):
        return None
    try:
        return relationship.measure(
            schema, frames, confidence=params.confidence, n_resamples=GATE_RESAMPLES
        )
    except Exception:  # noqa: BLE001 - the gate then judges as before, and says so
        log.exception("the relationship check failed: the reference check stays strict")
        return None


def decide(
    params,
    task: str,
    results: dict[str, ModelResult],
    bootstrap: dict | None = None,
    evidence=None,
    targets: dict | None = None,
):
    """The gate's decision on these results (at the bootstrap's bounds when given, the
    reference check excusing what a change of relationship costs), with its reasons;
    "not enough rows" when the test splits' `targets` cannot decide (`gate.undecidable`)."""
    return promotion.decide(
        task,
        min_improvement=params.min_improvement,
        tolerance=params.gate_tolerance,
        requested=params.promote,
        intervals=bootstrap,
        relationship=evidence,
        undecidable=gate.undecidable(task, targets, bootstrap) if targets else None,
        incumbent=params.incumbent,
        **gate_inputs(results, params.model_name),
    )


def gate_metrics(bootstrap: dict | None, evidence=None, decision=None) -> dict[str, float]:
    """gate_delta and its bounds on current_test, as the gate judged them, and the
    relationship change's cost on reference_test with what the gate excused of it (0
    under a tolerance set by hand)."""
    numbers = evidence.metrics() if evidence is not None else {}
    if numbers and decision is not None:
        numbers["reference_excused"] = decision.excused
    if not bootstrap:
        return numbers
    current = bootstrap["current_test"]
    return {
        **numbers,
        "gate_delta": current.delta,
        "gate_delta_ci_low": current.low,
        "gate_delta_ci_high": current.high,
    }


RELATIONSHIP_TAG = "mlcycle.gate.relationship"
INCUMBENT_TAG = "mlcycle.gate.incumbent"  # "true" or "false", as monitor's parameter says


def relationship_status(evidence) -> str:
    """changed / held / apart / not measured, as the run's tag and the page say it
    (apart: the reference rows lie where the present's do not, so neither can be told)."""
    if evidence is None:
        return "not measured"
    if evidence.apart:
        return "apart"
    return "changed" if evidence.changed else "held"


def relationship_settings(params, evidence) -> dict:
    """The page's account of the relationship check: the evidence and the rule applied."""
    if evidence is None:
        rule = "not measured (the gate had fewer than two models to judge): nothing excused"
    elif params.gate_tolerance is not None:
        rule = (
            f"tolerance is set ({params.gate_tolerance:g}): the reference check applies it "
            "as given, nothing excused"
        )
    elif evidence.apart:
        by = ", ".join(evidence.separated_by) or "the features together"
        rule = (
            f"the reference rows lie where the present's do not (overlap {evidence.overlap:.2f}, "
            f"below {relationship.OVERLAP_FLOOR:g}; told apart by {by}), so "
            "whether the relationship changed cannot be told and the old rows say nothing of "
            "the present: the reference check is not held against the challenger, judged on "
            "current_test"
        )
    elif evidence.changed:
        rule = (
            "the reference rows' targets no longer describe the present: the reference check "
            f"judges the challenger's loss there beyond the {evidence.cost:.4f} the change "
            "costs any model that follows the present"
        )
    else:
        rule = "the reference rows still describe the present: the reference check is strict"
    return {
        "status": relationship_status(evidence),
        "evidence": evidence.text() if evidence is not None else "",
        "rule": rule,
    }


def compared_champion(results: dict[str, ModelResult], model_name: str) -> str | None:
    """The champion version the challenger was compared with, when it is one of this
    model's (another model's champion cannot become this model's previous)."""
    champion = results["champion"]
    return champion.version if champion.name == model_name else None


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
    """Drift (overall and per column: `mlcycle.monitoring.tables`), both models' finite metrics
    (prefixed by role) and whether it promoted."""
    numbers = {
        "promoted": float(decision.status == promotion.PROMOTED),
        "gate_not_enough_rows": float(decision.status == promotion.NOT_ENOUGH_ROWS),
    }
    if drift_result is not None:
        numbers.update(drift_result.logged())
        for column in drift_result.by_role("target"):
            numbers["target_drift"] = float(column.drifted)
            numbers["target_drift_score"] = column.score
        numbers.update(tables.drift_metrics(drift_result, owners))
    for role, result in results.items():
        numbers.update({f"{role}_{k}": v for k, v in result.metrics.items() if math.isfinite(v)})
    return numbers


def gate_settings(params, evidence=None) -> dict:
    """The gate as the report states it."""
    tolerance = params.gate_tolerance
    return {
        "relationship": relationship_settings(params, evidence),
        "incumbent": params.incumbent,
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


def not_applied(decision: promotion.Decision, exc: Exception) -> promotion.Decision:
    """The decision as it ended when its alias moves could not be carried out."""
    reason = f"qualified, but the aliases did not move: {exc}; {decision.reason}"
    return dataclasses.replace(decision, promote=False, reason=reason)
