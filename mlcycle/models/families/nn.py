"""The network family: a small dense Keras network behind a pyfunc that takes raw rows.

Its parameters, fit, log, and what Optuna searches (a validation slice of the training
rows; each epoch reports its validation loss, so a hopeless trial is pruned early). The
served model itself lives in `mlcycle.models.network`, the training loop in
`mlcycle.models.training`."""

from __future__ import annotations

import optuna
import pandas as pd

from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import split_frame
from mlcycle.models.network import FAMILY, NetworkModel, NetworkParams, log_network
from mlcycle.models.training import fit_network
from mlcycle.models.tuning import validation_score

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
    """Log (and register, when model_name is given) the fitted network as the served
    network; the one place that chooses how a network is logged."""
    return log_network(model, schema, train, model_name, version_tags=version_tags)


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


def default_trial(task: str) -> dict:
    """The search-space values of the network retrain trains by default (NetworkParams'
    defaults, which are retrain's own): optimize's first trial."""
    return trial_values(NetworkParams())


def trial_values(params: NetworkParams) -> dict:
    """A network's parameters as values of the search space (suggest's names)."""
    units = {f"units_{i}": width for i, width in enumerate(params.hidden_units)}
    return {
        "n_layers": len(params.hidden_units),
        **units,
        "dropout": params.dropout,
        "learning_rate": params.learning_rate,
        "batch_size": params.batch_size,
        "epochs": params.epochs,
    }


def known_trial(values: dict) -> dict | None:
    """The search-space values of a network retrain kept (its `network.*` params, as
    MLflow logged them), or None when they lie outside the space (a trial there would
    not be the one asked for)."""
    p = NetworkParams.from_dict(values)
    inside = (
        1 <= len(p.hidden_units) <= 3
        and all(8 <= w <= 128 for w in p.hidden_units)
        and 0.0 <= p.dropout <= 0.5
        and 1e-4 <= p.learning_rate <= 3e-2
        and p.batch_size in (16, 32, 64, 128)
        and 20 <= p.epochs <= MAX_EPOCHS
        and p.epochs % 10 == 0
    )
    return trial_values(p) if inside else None


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
