"""mlflow run . -e baseline: train the RandomForest champion on reference train."""

from __future__ import annotations

import logging

import click
import mlflow

from mlcycle import charts, config, registry
from mlcycle.cli import INT, step_command, step_run
from mlcycle.errors import MlcycleError
from mlcycle.etl import load_splits, resolve_etl_run
from mlcycle.evaluate import predict, predict_proba, score
from mlcycle.forest import ForestParams, fit_forest
from mlcycle.served_forest import log_forest

log = logging.getLogger("mlcycle.baseline")


def _optional_int(value: str | None) -> int | None:
    return int(value) if value not in (None, "", "None", "none") else None


@click.command()
@click.option("--etl-run", default="", help="etl run id (default: the latest finished one)")
@click.option("--model-name", default=config.DEFAULT_MODEL_NAME, show_default=True)
@click.option("--n-estimators", type=INT, default=100, show_default=True)
@click.option("--max-depth", default="", help="empty for unlimited")
@click.option("--min-samples-split", type=INT, default=2, show_default=True)
@click.option("--min-samples-leaf", type=INT, default=1, show_default=True)
@click.option("--class-weight", default="", help="classification only: balanced, or empty")
@click.option("--seed", type=INT, default=42, show_default=True)
@step_command
def main(
    etl_run,
    model_name,
    n_estimators,
    max_depth,
    min_samples_split,
    min_samples_leaf,
    class_weight,
    seed,
):
    try:
        depth = _optional_int(max_depth)
    except ValueError as exc:
        raise MlcycleError(
            f"parameter max_depth must be an integer or empty, got {max_depth!r}"
        ) from exc
    params = ForestParams(
        n_estimators=n_estimators,
        max_depth=depth,
        min_samples_split=min_samples_split,
        min_samples_leaf=min_samples_leaf,
        class_weight=class_weight or None,
        seed=seed,
    ).validate()
    with step_run("baseline", {"etl_run": etl_run, "model_name": model_name, **vars(params)}):
        etl_run = resolve_etl_run(etl_run)
        mlflow.set_tag("mlcycle.etl_run", etl_run)
        schema, splits = load_splits(etl_run)
        pipeline = fit_forest(schema, params, splits.reference_train)
        mlflow.log_metrics(score(pipeline, schema, splits))
        if schema.task == "classification":
            _log_classification_charts(pipeline, schema, splits)
        info = log_forest(pipeline, schema, splits.reference_train, model_name)
        version = info.registered_model_version
        registry.tag_version(
            model_name, version, {"mlcycle.family": "rf", "mlcycle.etl_run": etl_run}
        )
        if registry.version_for_alias(model_name, config.CHAMPION) is None:
            registry.set_alias(model_name, config.CHAMPION, version)
            log.info(
                "%s had no champion: version %s is now %s",
                model_name,
                version,
                registry.alias_uri(model_name, config.CHAMPION),
            )
        else:
            log.info(
                "%s already has a champion: version %s registered without alias",
                model_name,
                version,
            )
        mlflow.set_tags({"mlcycle.model_name": model_name, "mlcycle.model_version": version})


def _log_classification_charts(pipeline, schema, splits) -> None:
    for name in ("reference_test", "current_test"):
        frame = getattr(splits, name)
        features, target = frame[schema.features], frame[schema.target]
        fig = charts.confusion_matrix_figure(
            target, predict(pipeline, features), schema.classes, f"confusion matrix, {name}"
        )
        mlflow.log_figure(fig, f"charts/confusion_matrix_{name}.png")
        charts.close(fig)
        proba = predict_proba(pipeline, features, schema.classes)
        fig = charts.roc_figure(target, proba, f"ROC, {name}")
        mlflow.log_figure(fig, f"charts/roc_{name}.png")
        charts.close(fig)


if __name__ == "__main__":
    main()
