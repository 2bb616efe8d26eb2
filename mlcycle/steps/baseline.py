"""The baseline step: train the champion on reference train: the RandomForest, or with
`family=hgb` boosted trees (HistGradientBoosting, the family's defaults).

Reads the etl run's splits (the latest finished etl run unless told, a fresh one on the
defaults when there is none); writes the forest's `reference_test_*`, `current_test_*`
and `train_rows` metrics (on the run and on the logged model, each naming the rows it
was measured on; reference train is the model's training input), for classification a
confusion matrix and ROC chart per test split, and a registered model version tagged
with its family and etl run. That version becomes `champion` when the model has none;
later ones wait for monitor."""

from __future__ import annotations

import logging
from dataclasses import asdict

import mlflow
import pandas as pd
from sklearn.pipeline import Pipeline

from mlcycle import config
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.lifecycle import aliases, lineage, registry
from mlcycle.models import families
from mlcycle.models.families import rf
from mlcycle.monitoring import charts
from mlcycle.monitoring.evaluate import predict, predict_proba, score
from mlcycle.steps.etl import open_etl
from mlcycle.steps.params.baseline import BaselineParams

log = logging.getLogger("mlcycle.baseline")


def forest_settings(params: BaselineParams) -> dict:
    """The model's settings that are not parameters of the step (the forest's
    max_features and n_jobs, every setting of the boosted trees, prefixed `hgb.`): logged
    beside them, so the run shows everything the model was fitted with."""
    if params.family != rf.NAME:
        return {f"{params.family}.{k}": v for k, v in asdict(params.model_params()).items()}
    step = asdict(params)
    return {k: v for k, v in asdict(params.forest()).items() if k not in step}


def train(
    schema: Schema, splits: Splits, model_params, family: str = rf.NAME
) -> tuple[Pipeline, dict]:
    """The family's model fitted on reference train only, and its metrics on both test
    splits."""
    model = families.get(family).fit(schema, model_params, splits.reference_train)
    return model, score(model, schema, splits)


def log_baseline(
    model: Pipeline,
    metrics: dict[str, float],
    schema: Schema,
    splits: Splits,
    params: BaselineParams,
    etl_run: str,
) -> str:
    """The registered forest, its metrics (each with the test split it was measured on)
    and charts, in the active run; the new version becomes champion when the model has
    none. Returns the version."""
    mlflow.log_params(forest_settings(params))
    name = params.model_name
    info = families.get(params.family).log(
        model,
        schema,
        splits.reference_train,
        name,
        version_tags={"mlcycle.family": params.family, "mlcycle.etl_run": etl_run},
    )
    # After the model: MLflow would copy metrics logged before it onto it without a dataset.
    lineage.log_lineage(info.model_id, schema, splits, etl_run, metrics, "reference_train")
    if schema.task == "classification":
        _log_classification_charts(model, schema, splits)
    version = str(info.registered_model_version)
    moves = aliases.first_champion(aliases.read_state(name), version)
    if aliases.apply(name, moves, reason="baseline: the model had no champion"):
        log.info(
            "%s had no champion: version %s is now %s",
            name,
            version,
            registry.alias_uri(name, config.CHAMPION),
        )
    else:
        log.info("%s already has a champion: version %s registered without alias", name, version)
    mlflow.set_tags({"mlcycle.model_name": name, "mlcycle.model_version": version})
    return version


def _log_classification_charts(model, schema: Schema, splits: Splits) -> None:
    for name in ("reference_test", "current_test"):
        frame: pd.DataFrame = getattr(splits, name)
        features, target = frame[schema.features], frame[schema.target]
        fig = charts.confusion_matrix_figure(
            target, predict(model, features), schema.classes, f"confusion matrix, {name}"
        )
        mlflow.log_figure(fig, f"charts/confusion_matrix_{name}.png")
        charts.close(fig)
        proba = predict_proba(model, features, schema.classes)
        fig = charts.roc_figure(target, proba, f"ROC, {name}")
        mlflow.log_figure(fig, f"charts/roc_{name}.png")
        charts.close(fig)


def execute(params: BaselineParams) -> str:
    """Train, score, log and register the model in the active run; its version."""
    etl = open_etl(params.etl_run)
    model, metrics = train(etl.schema, etl.splits, params.model_params(), params.family)
    return log_baseline(model, metrics, etl.schema, etl.splits, params, etl.run_id)
