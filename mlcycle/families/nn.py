"""The network family: a small dense Keras network behind a pyfunc that takes raw rows.

Its parameters, fit, log, and what Optuna searches (a validation slice of the training
rows; each epoch reports its validation loss, so a hopeless trial is pruned early). The
served model itself lives in `mlcycle.network`, the training loop in `mlcycle.training`."""

from __future__ import annotations

import logging
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import optuna
import pandas as pd

import mlcycle
from mlcycle import modelio
from mlcycle.data import Schema
from mlcycle.network import (
    FAMILY,
    METADATA_KEY,
    MODEL_CODE,
    NETWORK_ARTIFACT,
    NetworkModel,
    NetworkParams,
)
from mlcycle.split import split_frame
from mlcycle.training import fit_network
from mlcycle.tuning import validation_score

logger = logging.getLogger(__name__)

NAME = FAMILY
# Training-loop knobs that a tuning run's best_params.json does not decide for retrain.
TRAINING_BUDGET = ("epochs", "patience", "seed")
# The search: one validation slice of the training rows; epochs are searched up to
# MAX_EPOCHS, which is also the pruner's maximum resource.
VALIDATION_SHARE = 0.2
MAX_EPOCHS = 100
MIN_EPOCHS_BEFORE_PRUNING = 3


def params_from(values: dict) -> NetworkParams:
    """NetworkParams from best_params.json or MLflow params (tolerant of their text)."""
    return NetworkParams.from_dict(values)


def fit(schema: Schema, params: NetworkParams, train: pd.DataFrame) -> NetworkModel:
    """A network trained from scratch on the training rows (its history is dropped)."""
    return fit_network(schema, params, train)[0]


def log(
    model: NetworkModel,
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    *,
    version_tags: dict[str, str] | None = None,
):
    """Log the network as a pyfunc named 'model' (raw-row signature and input example);
    register it under model_name when given, with version_tags set in the same call
    (one registry write instead of one per tag). Returns MLflow's ModelInfo.

    The mlcycle package travels with the model (code_paths), so a server outside the
    project folder can import `mlcycle.network`."""
    example = modelio.input_example(train, schema)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / NETWORK_ARTIFACT)
        (tmp / "network_model.py").write_text(MODEL_CODE)
        package = Path(mlcycle.__file__).resolve().parent
        shutil.copytree(
            package,
            tmp / "code" / package.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        info = mlflow.pyfunc.log_model(
            name=modelio.MODEL_ARTIFACT,
            python_model=str(tmp / "network_model.py"),
            artifacts={NETWORK_ARTIFACT: str(tmp / NETWORK_ARTIFACT)},
            code_paths=[str(tmp / "code" / package.name)],
            signature=modelio.signature(schema, example, model.predict(example)),
            input_example=example,
            metadata={METADATA_KEY: FAMILY},
            pip_requirements=_pip_requirements(),
        )
    if model_name:
        version = mlflow.register_model(info.model_uri, model_name, tags=version_tags)
        info.registered_model_version = version.version
    logger.info(
        "logged network %s (registered version %s)", info.model_uri, info.registered_model_version
    )
    return info


def _pip_requirements() -> list[str]:
    pins = modelio.pip_requirements("keras", "numpy", "pandas")
    tf_version = _installed("tensorflow-cpu") or _installed("tensorflow")
    # Same markers as conda.yaml: there is no tensorflow-cpu wheel off Linux.
    return pins + [
        f'tensorflow-cpu=={tf_version}; sys_platform == "linux"',
        f'tensorflow=={tf_version}; sys_platform != "linux"',
    ]


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# --- search --------------------------------------------------------------------------


def suggest(trial: optuna.trial.BaseTrial, task: str, seed: int) -> NetworkParams:
    """Layers, widths, dropout, learning rate, batch size and epochs (the task only
    decides the output layer, which is not searched)."""
    layers = trial.suggest_int("n_layers", 1, 3)
    return NetworkParams(
        hidden_units=tuple(
            trial.suggest_int(f"units_{i}", 8, 128, log=True) for i in range(layers)
        ),
        dropout=trial.suggest_float("dropout", 0.0, 0.5),
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True),
        batch_size=trial.suggest_categorical("batch_size", [16, 32, 64, 128]),
        epochs=trial.suggest_int("epochs", 20, MAX_EPOCHS, step=10),
        seed=seed,
    )


def best_params(trial: optuna.trial.FrozenTrial, task: str, seed: int) -> dict:
    """The trial's network as JSON-ready values (hidden_units a list)."""
    return suggest(optuna.trial.FixedTrial(trial.params), task, seed).to_dict()


class NetworkObjective:
    """Validation score of a network fitted on the rest of the training rows. Each epoch
    reports its validation loss, so the pruner can stop a hopeless trial."""

    def __init__(self, schema: Schema, train: pd.DataFrame, metric: str, direction: str, seed: int):
        self.schema, self.metric, self.seed = schema, metric, seed
        self.fit_rows, self.valid_rows = split_frame(train, schema, VALIDATION_SHARE, seed)
        # Pruners compare intermediate values in the study's direction: a loss is to be
        # minimised, so a maximised study sees its negation (the order is what counts).
        self.sign = 1.0 if direction == "minimize" else -1.0
        self.curves: dict[int, dict[str, list[float]]] = {}

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest(trial, self.schema.task, self.seed)
        losses: list[float] = []
        self.curves[trial.number] = {"val_loss": losses}

        def on_epoch_end(epoch, logs):
            loss = float(logs["val_loss"])
            losses.append(loss)
            trial.report(self.sign * loss, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        model, _ = fit_network(self.schema, params, self.fit_rows, on_epoch_end=on_epoch_end)
        return validation_score(model, self.schema, self.valid_rows, self.metric)


def objective(
    schema: Schema, train: pd.DataFrame, metric: str, direction: str, seed: int
) -> NetworkObjective:
    return NetworkObjective(schema, train, metric, direction, seed)


def pruner() -> optuna.pruners.BasePruner:
    """Asynchronous successive halving on epochs: at epochs 3, 9, 27, 81 a trial goes on
    only if its validation loss is in the best third of the trials that got there.

    Optuna's guidance pairs its TPE sampler with HyperbandPruner, but Hyperband spreads
    trials over several such brackets and TPE then learns from one bracket's trials only;
    with the 10-30 trials of this step that kept the search mostly random, and it saved
    1.6x where one bracket saved more (benchmarks/RESULTS.md)."""
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=MIN_EPOCHS_BEFORE_PRUNING, reduction_factor=3
    )
