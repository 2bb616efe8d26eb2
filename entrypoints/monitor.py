"""mlflow run . -e monitor: drift, champion vs challenger, and (optionally) promotion.

Reads an etl run's splits and the models behind two URIs (by default
models:/NAME@champion and models:/NAME@challenger). Writes report.html and Evidently's
HTML to OUTPUT/<model_name>/<timestamp>/ and to the run's artifacts under report/,
OUTPUT/<model_name>/latest.html, drift and performance metrics, and the promotion
decision as tags on the run and on the challenger's model version. A missing challenger
(or champion) is reported, not an error: the drift report is made whatever exists."""

from __future__ import annotations

import logging
import math

import click
import mlflow

from mlcycle import config, drift, promotion, registry, report
from mlcycle.cli import options_from, step_command, step_run
from mlcycle.datasets import load_splits
from mlcycle.errors import MlcycleError
from mlcycle.report import ModelResult
from mlcycle.steps.etl import resolve_etl_run
from mlcycle.steps.monitor import MonitorParams

log = logging.getLogger("mlcycle.monitor")


@click.command()
@options_from(MonitorParams)
@step_command
def main(
    etl_run,
    model_name,
    champion,
    challenger,
    output,
    promote,
    min_improvement,
    tolerance,
    sample_size,
):
    tolerance = _tolerance(tolerance)
    _check_numbers(
        min_improvement=min_improvement,
        sample_size=sample_size,
        **({} if tolerance is None else {"tolerance": tolerance}),
    )
    report.output_folder(output, model_name)
    uris = {
        "champion": champion or registry.alias_uri(model_name, config.CHAMPION),
        "challenger": challenger or registry.alias_uri(model_name, config.CHALLENGER),
    }
    params = {
        "etl_run": etl_run,
        "model_name": model_name,
        "champion": champion,
        "challenger": challenger,
        "output": output,
        "promote": promote,
        "min_improvement": min_improvement,
        "tolerance": "auto" if tolerance is None else tolerance,
        "sample_size": sample_size,
    }
    with step_run("monitor", params) as run:
        etl_run = resolve_etl_run(etl_run)
        mlflow.set_tags({"mlcycle.etl_run": etl_run, "mlcycle.model_name": model_name})
        schema, splits = load_splits(etl_run)
        frames = dict(splits.items())
        loaded = {role: _load(role, uri) for role, uri in uris.items()}
        results = {
            role: _score(result, model, schema, frames) for role, (result, model) in loaded.items()
        }
        decision = _decide(schema.task, results, model_name, min_improvement, tolerance, promote)
        # Everything that can fail comes first: the aliases move last, once the report,
        # its artifacts and the metrics are logged, so a failure leaves them where they were.
        moved = _planned_move(decision, model_name, results)
        drift_result, drift_error, owners = _drift(schema, splits, loaded, results, sample_size)
        quality = drift.data_quality(*drift.reference_and_current(splits), schema)
        _log_numbers(drift_result, results, decision)
        context = report.assemble(
            model_name=model_name,
            schema=schema,
            frames=frames,
            models=results,
            decision=decision,
            moved=moved,
            quality=quality,
            drift=drift_result,
            drift_error=drift_error,
            prediction_owner=owners,
            gate={
                "promote": promote,
                "min_improvement": min_improvement,
                "tolerance": "its gain on current_test"
                if tolerance is None
                else f"{tolerance:g} (absolute)",
            },
            provenance=_provenance(run, etl_run, results, sample_size),
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
        )
        folder = report.report_folder(output, model_name, report.timestamp())
        paths = report.write_report(
            folder, context, drift_result.snapshot if drift_result else None
        )
        mlflow.log_artifacts(str(folder), "report")
        if moved:
            _promote(decision, model_name, results)
        _tag(decision, results, paths)
    click.echo(f"report: {paths['report']}")
    click.echo(f"latest: {paths['latest']}")


def _tolerance(text: str) -> float | None:
    """'auto' -> None (the gain on current_test); otherwise a number."""
    if str(text).strip().lower() in ("auto", ""):
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


def _load(role: str, uri: str) -> tuple[ModelResult, object]:
    """(result, model); the model is None and the result says why when it cannot load."""
    result = ModelResult(role=role, uri=uri)
    try:
        version = registry.resolve_version(uri)
    except MlcycleError as exc:
        log.info("%s %s: %s", role, uri, exc)
        result.error = "missing: not in the registry"
        return result, None
    if version is not None:
        result.name, result.version = version.name, str(version.version)
        result.run_id = version.run_id
        result.aliases = sorted(getattr(version, "aliases", []) or [])
        result.family = (version.tags or {}).get("mlcycle.family")
    try:
        return result, registry.load_pyfunc(uri)
    except MlcycleError as exc:
        log.warning("%s: %s", role, exc)
        result.error = f"failed to load: {exc}"
        return result, None


def _score(result: ModelResult, model, schema, frames) -> ModelResult:
    if model is None:
        return result
    try:
        return report.score_model(result, model, schema, frames)
    except Exception as exc:  # noqa: BLE001 - any model may fail; the report says how
        log.exception("%s %s failed to score", result.role, result.uri)
        result.metrics.clear()
        result.error = f"failed to score: {type(exc).__name__}: {exc}"
        return result


def _missing(result: ModelResult) -> bool:
    return bool(result.error and result.error.startswith("missing"))


def _decide(task, results, model_name, min_improvement, tolerance, promote) -> promotion.Decision:
    champion, challenger = results["champion"], results["challenger"]
    same = champion.version is not None and (champion.name, champion.version) == (
        challenger.name,
        challenger.version,
    )
    challenger_error = None if _missing(challenger) else challenger.error
    if challenger.ok and challenger.name != model_name:
        # An alias can only point at a version of the same registered model.
        challenger_error = (
            f"{challenger.uri} is not a registered version of {model_name}, "
            "so it cannot become its champion"
        )
    return promotion.decide(
        task,
        champion.metrics if champion.ok else None,
        challenger.metrics if challenger.ok else None,
        min_improvement=min_improvement,
        tolerance=tolerance,
        requested=promote,
        champion_error=None if _missing(champion) else champion.error,
        challenger_error=challenger_error,
        same_version=same,
    )


def _previous(model_name, results) -> str | None:
    champion = results["champion"]
    return champion.version if champion.name == model_name else None


def _planned_move(decision, model_name, results) -> str | None:
    """What promotion will do, for the report; the table shows the aliases as they will
    be. None when nothing moves."""
    challenger = results["challenger"]
    if decision.status != promotion.PROMOTED or challenger.version is None:
        return None
    previous = _previous(model_name, results)
    for result in results.values():
        if result.name != model_name or result.version is None:
            continue
        aliases = set(result.aliases)
        if result.version == challenger.version:
            aliases = (aliases - {config.CHALLENGER, config.PREVIOUS}) | {config.CHAMPION}
        elif result.version == previous:
            aliases = (aliases - {config.CHAMPION}) | {config.PREVIOUS}
        result.aliases = sorted(aliases)
    moved = f"champion = version {challenger.version}"
    if previous:
        moved += f", previous = version {previous}"
    return moved


def _promote(decision, model_name, results) -> None:
    promotion.apply(
        decision, model_name, _previous(model_name, results), results["challenger"].version
    )


def _drift(schema, splits, loaded, results, sample_size):
    """Drift of features, target and each scored model's predictions; an Evidently failure
    is reported in the page rather than losing the performance comparison."""
    reference, current = drift.reference_and_current(splits)
    taken = set(schema.features) | {schema.target}
    predictors, owners = {}, {}
    for role, (_, model) in loaded.items():
        if model is not None and results[role].ok:
            column = report.prediction_column(role, taken)
            predictors[column], owners[column] = model, role
    try:
        result = drift.run_drift(reference, current, schema, predictors, sample_size)
    except MlcycleError:
        raise
    except Exception as exc:  # noqa: BLE001 - keep the rest of the report
        log.exception("drift could not be measured")
        return None, f"drift could not be measured: {type(exc).__name__}: {exc}", owners
    return result, None, owners


def _log_numbers(drift_result, results, decision) -> None:
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
    for role, result in results.items():
        numbers.update({f"{role}_{k}": v for k, v in result.metrics.items() if math.isfinite(v)})
    mlflow.log_metrics(numbers)


def _tag(decision, results, paths) -> None:
    tags = promotion.tags(decision)
    mlflow.set_tags(
        {
            **tags,
            "mlcycle.report": str(paths["report"]),
            **{f"mlcycle.{role}_version": r.version for role, r in results.items() if r.version},
        }
    )
    challenger = results["challenger"]
    if challenger.version is not None:
        registry.tag_version(
            challenger.name,
            challenger.version,
            {**tags, "mlcycle.promotion.monitor_run": mlflow.active_run().info.run_id},
        )


def _provenance(run, etl_run, results, sample_size) -> list[tuple[str, str]]:
    etl_params = mlflow.get_run(etl_run).data.params
    rows = [
        ("monitor run", run.info.run_id),
        ("experiment", run.info.experiment_id),
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
        ("drift sample_size", str(sample_size or f"auto (≤ {drift.AUTO_SAMPLE_SIZE:,})")),
        ("tracking store", config.tracking_uri()),
    ]
    return rows


if __name__ == "__main__":
    main()
