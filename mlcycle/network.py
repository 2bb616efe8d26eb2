"""The Keras network: its hyper-parameters, preprocessing, training and the logged pyfunc.

`fit_network` trains a small dense network (from scratch, or continuing a base network's
weights) on raw training rows and returns a `NetworkModel`: the fitted preprocessing, the
Keras model, the target scaling and the hyper-parameters, saved and loaded together.
`log_network` logs it as one MLflow pyfunc that takes raw rows; `load_network` reads it
back for fine-tuning. TensorFlow is imported inside functions: it costs ~10 s, and most
importers of this module (the optimize and main steps' wiring) do not need it at import.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mlcycle.data import Schema
from mlcycle.errors import MlcycleError

log = logging.getLogger(__name__)

FAMILY = "nn"
METADATA_KEY = "mlcycle.family"
MISSING_CATEGORY = "__missing__"  # as mlcycle.features imputes it
NETWORK_ARTIFACT = "network"
_FORMAT = 1
_WEIGHTS_FILE = "network.keras"
_META_FILE = "network.json"
# Training-loop knobs that a tuning run's best_params.json does not decide for retrain.
TRAINING_BUDGET = ("epochs", "patience", "seed")


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class NetworkParams:
    """Everything that defines a network and how it is trained; saved with the model."""

    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 60
    patience: int = 10  # 0 = no early stopping
    seed: int = 42
    validation_share: float = 0.15  # validation slice carved from the training rows

    def __post_init__(self):
        # Lists from JSON and "64,32" from a command line become the tuple the type says.
        object.__setattr__(self, "hidden_units", _units(self.hidden_units))

    def validate(self) -> NetworkParams:
        checks = [
            (
                "hidden_units",
                bool(self.hidden_units) and min(self.hidden_units) >= 1,
                "one or more layer sizes >= 1",
            ),
            ("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)"),
            ("learning_rate", self.learning_rate > 0 and math.isfinite(self.learning_rate), "> 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("epochs", self.epochs >= 1, ">= 1"),
            ("patience", self.patience >= 0, ">= 0 (0 turns early stopping off)"),
            ("validation_share", 0.0 <= self.validation_share < 1.0, "in [0, 1)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise MlcycleError(
                    f"parameter {name} must be {expected}, got {getattr(self, name)!r}"
                )
        if self.patience and not self.validation_share:
            raise MlcycleError(
                "parameter patience needs a validation slice: "
                "validation_share must be > 0 when patience > 0"
            )
        return self

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden_units"] = list(self.hidden_units)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> NetworkParams:
        """Tolerant of JSON and MLflow params: '60', '60.0', '[64, 32]', '64,32'; keys that
        are not fields (e.g. 'family') are ignored."""
        kinds = {f.name: f.type for f in fields(cls)}
        out = {}
        for key, value in d.items():
            if key not in kinds or value is None or value == "":
                continue
            kind = kinds[key]
            try:
                if key == "hidden_units":
                    out[key] = _units(value)
                elif kind == "int":
                    out[key] = _whole(value)
                else:
                    out[key] = float(value)
            except (TypeError, ValueError) as exc:
                raise MlcycleError(f"network parameter {key} has a bad value {value!r}") from exc
        return cls(**out)


def _whole(value) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _units(value) -> tuple[int, ...]:
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        value = [v for v in text.replace(";", ",").split(",") if v.strip()]
    if isinstance(value, (int, float)):
        value = [value]
    return tuple(_whole(v) for v in value)


# ------------------------------------------------------------------------ preprocessing


@dataclass
class Preprocessing:
    """The preprocessing of mlcycle.features.build_preprocessor (median impute + standard
    scale numbers; impute '__missing__' + one-hot categories, unseen ones ignored), fitted
    into plain numbers. Why not the ColumnTransformer itself: it costs ~9 ms on one row,
    which is more than the network; this costs microseconds and saves as JSON (no pickle,
    which MLflow 3.17 refuses to load by default)."""

    numeric: list[str]
    medians: list[float]
    means: list[float]
    scales: list[float]
    categorical: list[str]
    categories: list[list[str]]

    @classmethod
    def fit(cls, schema: Schema, frame: pd.DataFrame) -> Preprocessing:
        medians, means, scales = [], [], []
        for col in schema.numeric:
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64")
            median = float(np.nanmedian(values)) if np.isfinite(values).any() else 0.0
            filled = np.where(np.isnan(values), median, values)
            std = float(filled.std())
            medians.append(median)
            means.append(float(filled.mean()))
            scales.append(std if std > 0 else 1.0)  # as StandardScaler: constant -> 1
        categories = [_categories(frame[col]) for col in schema.categorical]
        return cls(
            list(schema.numeric), medians, means, scales, list(schema.categorical), categories
        )

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories)

    def transform(self, frame: pd.DataFrame, dtype: str = "float32") -> np.ndarray:
        """Raw rows -> float32 matrix (what the network takes). A column absent from the
        rows counts as missing. dtype="float64" gives the ColumnTransformer's own numbers
        bit for bit (the same float64 subtraction and division as StandardScaler): the
        served forest builds its tree inputs from them."""
        n = len(frame)
        out = np.zeros((n, self.width), dtype=dtype)
        for j, col in enumerate(self.numeric):
            values = _numeric_column(frame, col, n)
            values = np.where(np.isnan(values), self.medians[j], values)
            out[:, j] = (values - self.means[j]) / self.scales[j]
        offset = len(self.numeric)
        for col, cats in zip(self.categorical, self.categories, strict=True):
            index = {c: i for i, c in enumerate(cats)}
            raw = frame[col] if col in frame.columns else pd.Series([None] * n)
            codes = np.fromiter(
                (index.get(v, -1) for v in _category_values(raw)), dtype="int64", count=n
            )
            known = codes >= 0
            out[np.flatnonzero(known), offset + codes[known]] = 1.0
            offset += len(cats)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(**d)


def _categories(column: pd.Series) -> list[str]:
    """Sorted, with the missing category last, in the order OneHotEncoder puts them."""
    seen = set(_category_values(column))
    return sorted(seen - {MISSING_CATEGORY}) + [MISSING_CATEGORY] * (MISSING_CATEGORY in seen)


def _category_values(column: pd.Series):
    """Strings, with None/NaN as the '__missing__' category (as the forest's imputer)."""
    for value in column.tolist():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            yield MISSING_CATEGORY
        else:
            yield str(value)


class BadInput(ValueError):
    """A row the model cannot read (text where a number belongs), named by column."""


def _numeric_column(frame: pd.DataFrame, col: str, n: int) -> np.ndarray:
    if col not in frame.columns:
        return np.full(n, np.nan)
    try:
        return frame[col].to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        raise BadInput(
            f"column {col!r} should be numeric but holds {frame[col][bad].iloc[0]!r}"
        ) from None


# ------------------------------------------------------------------------------ network


def tensorflow_and_keras():
    """Import TensorFlow and Keras on first need, with TF's C++ start-up chatter off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN's fused kernels may round differently from run to run; plain kernels are
    # as fast for layers this small and keep a seed's results the same.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras
    import tensorflow as tf

    tf_log = logging.getLogger("tensorflow")
    if not any(isinstance(f, _RetracingNoise) for f in tf_log.filters):
        tf_log.addFilter(_RetracingNoise())
    return tf, keras


class _RetracingNoise(logging.Filter):
    """Every model (a tuning trial, a scored base) traces its own training and predict
    graphs once; TF counts those across models and warns of 'retracing' that is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


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


class NetworkModel:
    """In memory: preprocessing + Keras model + target scaling + classes + params."""

    def __init__(
        self,
        schema: Schema,
        params: NetworkParams,
        preprocessing: Preprocessing,
        network,
        target_mean: float = 0.0,
        target_scale: float = 1.0,
    ):
        self.schema = schema
        self.params = params
        self.preprocessing = preprocessing
        self.network = network
        self.target_mean = float(target_mean)
        self.target_scale = float(target_scale)
        self.classes_ = list(schema.classes) if schema.task == "classification" else []
        self._forward = None

    # -- prediction: the network called directly, never keras' predict (~35 ms a call)
    def raw_output(self, frame: pd.DataFrame) -> np.ndarray:
        x = self.preprocessing.transform(frame)
        if not len(x):
            return np.zeros((0, self.network.output_shape[-1]), dtype="float32")
        return self._forward_fn()(x).numpy()

    def _forward_fn(self):
        # One traced graph for any row count: ~0.5 ms a call where eager costs ~3 ms.
        if self._forward is None:
            tf, _ = tensorflow_and_keras()
            spec = tf.TensorSpec([None, self.preprocessing.width], tf.float32)
            # A partial, not a lambda: TF counts traces per code object, so lambdas of
            # several models in one process (a tuning study) would warn of retracing.
            self._forward = tf.function(
                functools.partial(self.network, training=False), input_signature=[spec]
            )
        return self._forward

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows -> values (regression, original units) or class labels."""
        out = self.raw_output(frame)
        if self.schema.task == "regression":
            return out[:, 0].astype("float64") * self.target_scale + self.target_mean
        return np.asarray(self.classes_)[self._proba(out).argmax(axis=1)]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, columns in schema.classes order."""
        if self.schema.task != "classification":
            raise MlcycleError("predict_proba is for classification models only")
        return self._proba(self.raw_output(frame))

    @staticmethod
    def _proba(out: np.ndarray) -> np.ndarray:
        if out.shape[1] == 1:  # sigmoid: probability of the second class
            p = out[:, 0].astype("float64")
            return np.column_stack([1.0 - p, p])
        return out.astype("float64")

    # -- persistence: a folder with the Keras file and one JSON of everything else
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.network.save(path / _WEIGHTS_FILE)
        meta = {
            "format": _FORMAT,
            "family": FAMILY,
            "schema": self.schema.to_dict(),
            "params": self.params.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
        }
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> NetworkModel:
        _, keras = tensorflow_and_keras()
        path = Path(path)
        meta = json.loads((path / _META_FILE).read_text())
        network = keras.models.load_model(path / _WEIGHTS_FILE, compile=False)
        return cls(
            Schema.from_dict(meta["schema"]),
            NetworkParams.from_dict(meta["params"]),
            Preprocessing.from_dict(meta["preprocessing"]),
            network,
            meta["target_mean"],
            meta["target_scale"],
        )


# ----------------------------------------------------------------------------- training


def base_mismatch(pyfunc_model, schema: Schema) -> str | None:
    """Why a base model (any loaded pyfunc) does not model this schema's data: another
    task, another target, or input columns the data lacks. None when it does, or when the
    model does not say (no signature, an unknown flavour): scoring it will tell.

    Data columns the base does not read are no mismatch: a champion that predates a new
    column still scores the rows (MLflow drops what its signature does not name)."""
    reasons = []
    network = network_of(pyfunc_model)
    described = network.schema if network is not None else _carried_schema(pyfunc_model)
    if described is not None:
        task, target, inputs = described.task, described.target, described.features
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


def _carried_schema(pyfunc_model) -> Schema | None:
    """The schema another mlcycle pyfunc carries (the served forest keeps the one it was
    logged with), or None for models that do not carry one."""
    try:
        inner = pyfunc_model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a custom Python model (e.g. an sklearn flavour)
        return None
    schema = getattr(inner, "schema", None)
    return schema if isinstance(schema, Schema) else None


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
    schema: Schema, params: NetworkParams, train: pd.DataFrame, *, base=None, on_epoch_end=None
) -> tuple[NetworkModel, dict[str, list[float]]]:
    """Train on `train` (schema.features + schema.target).

    base: a NetworkModel to fine-tune: its preprocessing, target scaling and architecture
    are kept and its weights are the starting point (base itself is not changed).
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
    fit_rows, val_rows = split_validation(train, params.validation_share, params.seed)
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


def _epoch_callback(keras, on_epoch_end, epochs: int):
    """A Keras callback that calls the caller's on_epoch_end and logs progress: one line
    per epoch when a person watches a terminal, one every tenth of the training otherwise,
    so CI logs stay short. (Keras' own verbose output is two lines an epoch, or a bar.)"""
    every = 1 if sys.stderr.isatty() else max(1, math.ceil(epochs / 10))

    class EpochHook(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
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


# ------------------------------------------------------------------------------- pyfunc


class NetworkPyfunc(mlflow.pyfunc.PythonModel):
    """The logged model: raw rows in; values or labels out, or class probabilities with
    params={'predict_method': 'predict_proba'} (as MLflow's sklearn flavour answers)."""

    def __init__(self):
        self.model: NetworkModel | None = None

    def load_context(self, context):
        self.model = NetworkModel.load(context.artifacts[NETWORK_ARTIFACT])
        # Trace the graph now, so the first served request is not the slow one.
        self.model.raw_output(pd.DataFrame({c: [None] for c in self.model.schema.features}))

    # The pd.DataFrame hint tells MLflow that the signature given at logging time rules.
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        method = (params or {}).get("predict_method", "predict")
        if method not in ("predict", "predict_proba"):
            raise _bad_request(f"predict_method must be predict or predict_proba, got {method!r}")
        try:
            if method == "predict_proba":
                return pd.DataFrame(self.model.predict_proba(frame), columns=self.model.classes_)
            return self.model.predict(frame)
        except BadInput as exc:
            raise _bad_request(str(exc)) from None


def _bad_request(message: str):
    """What the scoring server answers with a 400 carrying this message; any other
    exception becomes its generic "unexpected error while evaluating the model"."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


# The file MLflow executes to build the pyfunc on load ("models from code"): MLflow 3.17
# refuses pickled Python models by default. The mlcycle package travels with the model
# (code_paths), so a server outside the project folder can import it.
_MODEL_CODE = (
    "from mlflow.models import set_model\n"
    "from mlcycle.network import NetworkPyfunc\n"
    "set_model(NetworkPyfunc())\n"
)


def log_network(
    model: NetworkModel,
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    *,
    version_tags: dict[str, str] | None = None,
):
    """Log the network as a pyfunc named 'model' (raw-row signature and input example);
    register it under model_name when given, with version_tags set in the same call
    (one registry write instead of one per tag). Returns MLflow's ModelInfo."""
    from mlcycle import modelio

    example = modelio.input_example(train, schema)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / NETWORK_ARTIFACT)
        (tmp / "network_model.py").write_text(_MODEL_CODE)
        package = Path(__file__).resolve().parent
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
    log.info(
        "logged network %s (registered version %s)", info.model_uri, info.registered_model_version
    )
    return info


def _pip_requirements() -> list[str]:
    from mlcycle import modelio

    pins = modelio.pip_requirements("keras", "numpy", "pandas")
    tf_version = _installed("tensorflow-cpu") or _installed("tensorflow")
    # Same markers as conda.yaml: there is no tensorflow-cpu wheel off Linux.
    return pins + [
        f'tensorflow-cpu=={tf_version}; sys_platform == "linux"',
        f'tensorflow=={tf_version}; sys_platform != "linux"',
    ]


def _installed(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def network_of(pyfunc_model) -> NetworkModel | None:
    """The NetworkModel inside a loaded pyfunc, or None when it is another kind of model."""
    try:
        inner = pyfunc_model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a custom Python model (e.g. an sklearn flavour)
        return None
    model = getattr(inner, "model", None)
    return model if isinstance(model, NetworkModel) else None


def is_network(model_uri: str) -> bool:
    """Whether a logged model is an mlcycle network, from its MLmodel file alone."""
    try:
        info = mlflow.models.get_model_info(model_uri)
    except Exception:  # noqa: BLE001 - missing models are reported by whoever loads them
        return False
    return (info.metadata or {}).get(METADATA_KEY) == FAMILY


def load_network(model_uri: str) -> NetworkModel | None:
    """A logged mlcycle network, weights and preprocessing intact; None for other models."""
    if not is_network(model_uri):
        return None
    return network_of(mlflow.pyfunc.load_model(model_uri))


def history_metrics(history: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-epoch curves under their MLflow metric names."""
    names = {"loss": "train_loss", "val_loss": "val_loss"}
    return {names[k]: v for k, v in history.items() if k in names and v}


def log_history(history: dict[str, list[float]]) -> None:
    """Per-epoch losses as MLflow metrics with steps (epoch 1, 2, ...) in one batch, and
    the learning-curve chart, in the active run."""
    import time

    from mlflow.entities import Metric

    from mlcycle import charts

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
