"""The network's training loop: build, fit (from scratch or continuing a base network),
and what the training says about itself.

`fit_network` trains a small dense network on raw training rows and returns a
`mlcycle.models.network.NetworkModel` (the served model: fitted preprocessing, Keras model,
target scaling and hyper-parameters) and the per-epoch loss curves. Pure apart from
TensorFlow: nothing here talks to MLflow."""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import replace

import numpy as np
import pandas as pd

from mlcycle import signals
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models.network import NetworkModel, NetworkParams, tensorflow_and_keras
from mlcycle.models.serving import Preprocessing

log = logging.getLogger(__name__)


def output_spec(schema: Schema) -> tuple[int, str, str]:
    """(units, activation, loss) of the output layer for the schema's task."""
    if schema.task == "regression":
        return 1, "linear", "mse"
    if len(schema.classes) < 2:
        raise MlcycleError(
            f"classification target {schema.target!r} needs at least two "
            f"classes, the schema has {schema.classes}"
        )
    if len(schema.classes) == 2:
        return 1, "sigmoid", "binary_crossentropy"
    return len(schema.classes), "softmax", "sparse_categorical_crossentropy"


def build_network(n_inputs: int, schema: Schema, params: NetworkParams):
    """Dense ReLU layers of params.hidden_units (dropout after each when > 0), one output
    layer fit for the task. Not compiled: fit_network compiles with the training's
    learning rate."""
    _, keras = tensorflow_and_keras()
    units, activation, _ = output_spec(schema)
    inputs = keras.Input(shape=(n_inputs,), name="features")
    x = inputs
    for i, width in enumerate(params.hidden_units):
        x = keras.layers.Dense(width, activation="relu", name=f"dense_{i}")(x)
        if params.dropout:
            x = keras.layers.Dropout(params.dropout, seed=params.seed + i, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(units, activation=activation, name="output")(x)
    return keras.Model(inputs, outputs, name="mlcycle_network")


def finetune_params(params: NetworkParams, base: NetworkModel) -> NetworkParams:
    """params as fine-tuning base trains them: the weights only fit the base's shape, so
    its architecture (layer sizes, dropout) wins over the one asked for."""
    return replace(params, hidden_units=base.params.hidden_units, dropout=base.params.dropout)


def finetune_obstacle(base: NetworkModel, schema: Schema) -> str | None:
    """Why base cannot be fine-tuned on data of this schema, or None when it can."""
    if base.schema.task != schema.task:
        return f"the base model is a {base.schema.task} network, the data is {schema.task}"
    if base.schema.target != schema.target:
        return f"the base model predicts {base.schema.target!r}, not {schema.target!r}"
    if set(base.schema.features) != set(schema.features):
        return "the base model was trained on other feature columns"
    if schema.task == "classification" and list(base.classes_) != list(schema.classes):
        return f"the base model knows classes {base.classes_}, the data has {schema.classes}"
    return None


def seed_everything(seed: int) -> None:
    """Same seed and data, same weights and metrics on the CPU."""
    tf, keras = tensorflow_and_keras()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit_network(
    schema: Schema,
    params: NetworkParams,
    train: pd.DataFrame,
    *,
    base=None,
    on_epoch_end=None,
    validation: pd.DataFrame | None = None,
) -> tuple[NetworkModel, dict[str, list[float]]]:
    """Train on `train` (schema.features + schema.target).

    base: a NetworkModel to fine-tune: its preprocessing, target scaling and architecture
    are kept and its weights are the starting point (base itself is not changed).
    validation: the rows early stopping watches, when the caller chose them (retrain
    keeps them to current rows, whatever it trains on); by default a seeded slice of
    `train` (params.validation_share) is carved out for it.
    on_epoch_end(epoch, logs) is called after each epoch (0-based, logs['val_loss'] when
    there is a validation slice); what it raises propagates (e.g. optuna.TrialPruned).
    Returns the fitted model and the history {'loss': [...], 'val_loss': [...]}."""
    params.validate()
    if base is not None:
        if reason := finetune_obstacle(base, schema):
            raise MlcycleError(f"cannot fine-tune: {reason}")
        params = finetune_params(params, base)
    tf, keras = tensorflow_and_keras()
    seed_everything(params.seed)
    if validation is None:
        fit_rows, val_rows = split_validation(train, params.validation_share, params.seed)
    else:
        fit_rows, val_rows = train.reset_index(drop=True), validation.reset_index(drop=True)
    if base is None:
        preprocessing = Preprocessing.fit(schema, fit_rows)
        mean, scale = target_scaling(schema, fit_rows[schema.target])
        network = build_network(preprocessing.width, schema, params)
    else:
        preprocessing, mean, scale = base.preprocessing, base.target_mean, base.target_scale
        network = keras.models.clone_model(base.network)
        network.set_weights(base.network.get_weights())
    model = NetworkModel(schema, params, preprocessing, network, mean, scale)
    network.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
        loss=output_spec(schema)[2],
    )
    x, y = preprocessing.transform(fit_rows), encode_target(model, fit_rows[schema.target])
    validation = None
    if len(val_rows):
        validation = (
            preprocessing.transform(val_rows),
            encode_target(model, val_rows[schema.target]),
        )
    callbacks = [_epoch_callback(keras, on_epoch_end, params.epochs)]
    if params.patience and validation is not None:
        callbacks.insert(
            0,
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=params.patience, restore_best_weights=True
            ),
        )
    history = network.fit(
        x,
        y,
        validation_data=validation,
        epochs=params.epochs,
        batch_size=params.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    curves = {k: [float(v) for v in history.history.get(k, [])] for k in ("loss", "val_loss")}
    return model, curves


def fit_bag(
    schema: Schema,
    params: NetworkParams,
    train: pd.DataFrame,
    *,
    members: int = 1,
    base=None,
    validation: pd.DataFrame | None = None,
) -> tuple[NetworkModel, dict[str, list[float]]]:
    """`members` networks on the same rows, averaged (`NetworkModel.extra_networks`): the
    first is what `fit_network` fits with these arguments, each further one the same
    training from seed params.seed + i, early-stopped on the same rows. Returns the bag
    and the first network's history. Why: networks of one architecture trained from
    other seeds err differently, and their mean errs less than any one (on the scenario
    bank's noisy targets by 0.01-0.02 R² for 5 networks: docs/retrain.md)."""
    if members < 1:
        raise MlcycleError(f"parameter members must be >= 1, got {members}")
    if validation is None and members > 1:
        # The split fit_network would carve, once: every member stops on the same rows.
        train, validation = split_validation(train, params.validation_share, params.seed)
    model, history = fit_network(schema, params, train, base=base, validation=validation)
    add_members(model, schema, params, train, members - 1, base=base, validation=validation)
    return model, history


def add_members(
    model: NetworkModel,
    schema: Schema,
    params: NetworkParams,
    train: pd.DataFrame,
    count: int,
    *,
    base=None,
    validation: pd.DataFrame | None = None,
) -> NetworkModel:
    """`count` more networks in the bag `model` (trained as `fit_bag` trains its further
    members: seeds params.seed + members so far, the same rows); the model, grown."""
    for _ in range(count):
        seeded = replace(params, seed=params.seed + model.members)
        other, _ = fit_network(schema, seeded, train, base=base, validation=validation)
        if other.preprocessing.width != model.preprocessing.width:  # never, same rows
            raise MlcycleError("a bag's networks must share their preprocessing")
        model.extra_networks.append(other.network)
    return model


def _epoch_callback(keras, on_epoch_end, epochs: int):
    """A Keras callback that calls the caller's on_epoch_end and logs progress: one line
    per epoch when a person watches a terminal, one every tenth of the training otherwise,
    so CI logs stay short. (Keras' own verbose output is two lines an epoch, or a bar.)"""
    every = 1 if sys.stderr.isatty() else max(1, math.ceil(epochs / 10))

    class EpochHook(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            signals.check()  # a stop request Keras' native code swallowed acts here
            logs = dict(logs or {})
            if (epoch + 1) % every == 0 or epoch + 1 == epochs:
                val = f", val_loss {logs['val_loss']:.4f}" if "val_loss" in logs else ""
                log.info(
                    "epoch %d/%d: loss %.4f%s",
                    epoch + 1,
                    epochs,
                    logs.get("loss", float("nan")),
                    val,
                )
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)

    return EpochHook()


def split_validation(
    train: pd.DataFrame, share: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random slice of the training rows for validation (none when share is 0
    or there are too few rows to spare one)."""
    n_val = 0
    if share and len(train) >= 2:
        n_val = min(max(int(round(len(train) * share)), 1), len(train) - 1)
    order = np.random.default_rng(seed).permutation(len(train))
    return (
        train.iloc[order[n_val:]].reset_index(drop=True),
        train.iloc[order[:n_val]].reset_index(drop=True),
    )


def target_scaling(schema: Schema, target: pd.Series) -> tuple[float, float]:
    """(mean, std) of a regression target; (0, 1) for classification. The network learns
    the standardised target: an output of ~1e4 with a default learning rate would take
    thousands of epochs to reach."""
    if schema.task != "regression":
        return 0.0, 1.0
    values = target.to_numpy(dtype="float64")
    std = float(values.std())
    return float(values.mean()), std if std > 0 else 1.0


def encode_target(model: NetworkModel, target: pd.Series) -> np.ndarray:
    """Regression: standardised values. Classification: index in schema.classes."""
    if model.schema.task == "regression":
        values = target.to_numpy(dtype="float64")
        return ((values - model.target_mean) / model.target_scale).astype("float32")
    index = {label: i for i, label in enumerate(model.classes_)}
    codes = target.map(index)
    if codes.isna().any():
        unknown = target[codes.isna()].iloc[0]
        raise MlcycleError(
            f"target {model.schema.target!r} holds {unknown!r}, which is not "
            f"one of the schema's classes {model.classes_}"
        )
    return codes.to_numpy(dtype="int64")


def history_metrics(history: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-epoch curves under their MLflow metric names."""
    names = {"loss": "train_loss", "val_loss": "val_loss"}
    return {names[k]: v for k, v in history.items() if k in names and v}


def training_summary(history: dict[str, list[float]], params: NetworkParams) -> dict[str, float]:
    """Epochs run, the epoch of the lowest val_loss, and the epoch whose weights the model
    kept: the best one under early stopping (its weights are restored), the last one with
    patience 0 (nothing is restored)."""
    epochs = len(history.get("loss", []))
    out = {"epochs_trained": float(epochs), "kept_epoch": float(epochs)}
    if history.get("val_loss"):
        best = int(np.argmin(history["val_loss"])) + 1
        out["best_epoch"] = float(best)
        out["best_val_loss"] = float(min(history["val_loss"]))
        if params.patience:
            out["kept_epoch"] = float(best)
    return out
