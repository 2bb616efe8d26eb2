"""The retrain step: a Keras network trained on the new data, registered as challenger."""

from __future__ import annotations

import time
from dataclasses import dataclass

import mlflow
from mlflow.entities import Metric

from mlcycle import charts, config
from mlcycle.data import Schema
from mlcycle.network import network_of
from mlcycle.params import param
from mlcycle.training import history_metrics

STRATEGIES = ("finetune", "scratch")
WINDOWS = ("current", "all")


@dataclass(frozen=True)
class RetrainParams:
    etl_run: str = param("", "etl run id (default: the latest finished one)")
    model_name: str = param(config.DEFAULT_MODEL_NAME, "registered model name")
    epochs: int = param(60, "maximum training epochs", minimum=1)
    batch_size: int = param(32, "rows per gradient step", minimum=1)
    learning_rate: float = param(0.001, "Adam's learning rate (> 0)")
    base_model: str = param("", "model URI to start from (default: models:/NAME@champion)")
    strategy: str = param(
        "finetune",
        "finetune (continue the base network's weights) or scratch",
        choices=STRATEGIES,
    )
    window: str = param(
        "current",
        "training rows: current train only, or all (reference train + current train)",
        choices=WINDOWS,
    )
    params_from: str = param(
        "", "an optimize run (family nn) whose best network hyper-parameters to use"
    )
    patience: int = param(10, "early-stopping patience in epochs; 0 turns it off", minimum=0)
    seed: int = param(42, "seed of the network's weights and batches", minimum=0)


def base_mismatch(pyfunc_model, schema: Schema) -> str | None:
    """Why a base model (any loaded pyfunc) does not model this schema's data: another
    task, another target, or input columns the data lacks. None when it does, or when the
    model does not say (no signature, an unknown flavour): scoring it will tell.

    Data columns the base does not read are no mismatch: a champion that predates a new
    column still scores the rows (MLflow drops what its signature does not name)."""
    reasons = []
    network = network_of(pyfunc_model)
    if network is not None:
        task, target, inputs = network.schema.task, network.schema.target, network.schema.features
    else:
        task, target, inputs = _flavour_task(pyfunc_model), None, _signature_inputs(pyfunc_model)
    if task and task != schema.task:
        reasons.append(f"it is a {task} model and the data is {schema.task}")
    if target and target != schema.target:
        reasons.append(f"it predicts {target!r}, not the data's target {schema.target!r}")
    lacking = [c for c in inputs or [] if c not in schema.features]
    if lacking:
        reasons.append(f"it reads columns the data lacks ({', '.join(sorted(lacking))})")
    return "; ".join(reasons) or None


def _signature_inputs(pyfunc_model) -> list[str] | None:
    try:
        inputs = pyfunc_model.metadata.get_input_schema()
    except Exception:  # noqa: BLE001 - a model without metadata says nothing
        return None
    if inputs is None or not inputs.has_input_names():
        return None
    return list(inputs.input_names())


def _flavour_task(pyfunc_model) -> str | None:
    """regression / classification for an sklearn model (e.g. the forest), else None."""
    from sklearn.base import is_classifier, is_regressor

    try:
        raw = pyfunc_model.get_raw_model()
    except Exception:  # noqa: BLE001 - flavours without a raw model raise anything
        return None
    if is_classifier(raw):
        return "classification"
    return "regression" if is_regressor(raw) else None


def log_history(history: dict[str, list[float]]) -> None:
    """Per-epoch losses as MLflow metrics with steps (epoch 1, 2, ...) in one batch, and
    the learning-curve chart, in the active run."""
    curves = history_metrics(history)
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, value, now, step)
        for name, values in curves.items()
        for step, value in enumerate(values, start=1)
    ]
    if metrics:
        mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics)
        fig = charts.learning_curve_figure(curves, "learning curve")
        mlflow.log_figure(fig, "charts/learning_curve.png")
        charts.close(fig)
