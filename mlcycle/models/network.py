"""The served network: what a logged mlcycle network is once loaded.

`NetworkModel` holds the fitted preprocessing, the Keras model, the target scaling and
the hyper-parameters (`NetworkParams`), saved and loaded together; `NetworkPyfunc` is
the MLflow pyfunc around it, which takes raw rows. Every logged network loads through
`from mlcycle.models.network import NetworkPyfunc` and reads the folder `NetworkModel.save`
wrote: this module's path and that format are a contract with the models already in a
registry. Training is `mlcycle.models.training`; what both served models share,
`mlcycle.models.serving`.

TensorFlow is imported inside functions: it costs ~5-10 s, and most importers of this
module (the optimize and main steps' wiring) do not need it at import. A loaded network
predicts with its `DenseStack` (`mlcycle.models.dense_stack`) in NumPy and reads the
Keras model only to be trained further, so scoring, monitoring and serving a network
never import TensorFlow."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models import modelio
from mlcycle.models.dense_stack import DenseStack
from mlcycle.models.serving import (
    Preprocessing,
    RawRowPyfunc,
    is_family,
    log_from_code,
    served_model,
)

log = logging.getLogger(__name__)

FAMILY = "nn"
NETWORK_ARTIFACT = "network"
_FORMAT = 1
_WEIGHTS_FILE = "network.keras"
_META_FILE = "network.json"
_STACK_FILE = "dense_stack.npz"
# A bag's further networks: network_<i>.keras and dense_stack_<i>.npz, i = 1, 2, ...
_MEMBER_FILES = ("network_{}.keras", "dense_stack_{}.npz")


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class NetworkParams:
    """Everything that defines a network and how it is trained; saved with the model
    (hence here, beside it: `NetworkModel.load` rebuilds it without the training code)."""

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


# ------------------------------------------------------------------------ served model


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


class NetworkModel:
    """In memory: preprocessing + Keras model + target scaling + classes + params.

    A bag: further networks of the same architecture, trained on the same rows from other
    seeds (`extra_networks`, `mlcycle.models.training.fit_bag`), whose outputs (scaled
    values, class probabilities) are averaged with the first's. `network` is the first:
    what fine-tuning continues."""

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
        self._stack: DenseStack | None = None  # set by load: predicts without TensorFlow
        self._keras_file: Path | None = None
        self._saved_without_stack = False
        self.extra_networks: list = []  # a bag's further Keras networks (in training)
        self._extra_stacks: list[DenseStack] = []  # theirs, as loaded
        self._extra_keras_files: list[Path] = []  # the files those were loaded with

    @property
    def members(self) -> int:
        """How many networks the model averages (1: a single network)."""
        return 1 + max(len(self.extra_networks), len(self._extra_stacks))

    @property
    def network(self):
        """The Keras model: a loaded network reads it on first need (fine-tuning), since
        predicting needs only its dense stack and TensorFlow costs ~5 s to import."""
        if self._network is None and self._keras_file is not None:
            _, keras = tensorflow_and_keras()
            self._network = keras.models.load_model(self._keras_file, compile=False)
        return self._network

    @network.setter
    def network(self, value) -> None:
        self._network = value

    # -- prediction: the network called directly, never keras' predict (~35 ms a call)
    def raw_output(self, frame: pd.DataFrame) -> np.ndarray:
        x = self.preprocessing.transform(frame)
        # A network in training: its weights now, so that what training measures is what
        # the loaded model answers, to the bit. A model saved before the stack answers
        # through Keras, as when it was logged.
        stack = self._stack
        if stack is None and not self._saved_without_stack:
            stack = DenseStack.of(self.network)
        if stack is not None:
            out = stack(x)
            if self.members > 1:
                others = self._extra_stacks or [DenseStack.of(n) for n in self.extra_networks]
                out = (out + sum(other(x) for other in others)) / self.members
            return out
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
        """The folder (created if need be). A loaded model's networks not read into Keras
        are copied from the files they were loaded from, which must still be there (a
        blend saves its members as loaded, from MLflow's download folder)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self._network is None and self._keras_file is not None:
            _copy(self._keras_file, path / _WEIGHTS_FILE)  # no TensorFlow to copy a file
            stack = self._stack
        else:
            self.network.save(path / _WEIGHTS_FILE)
            stack = DenseStack.of(self.network)
        meta = {
            "format": _FORMAT,
            "family": FAMILY,
            "schema": self.schema.to_dict(),
            "params": self.params.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
        }
        if stack is not None:
            meta["dense_stack"] = stack.save(path / _STACK_FILE)
        # A bag's further networks: in training, Keras models; loaded, their stacks and
        # the Keras files they were read from (a blend saves its members as loaded).
        for i in range(1, self.members):
            keras_file, stack_file = (name.format(i) for name in _MEMBER_FILES)
            if self.extra_networks:
                self.extra_networks[i - 1].save(path / keras_file)
                DenseStack.of(self.extra_networks[i - 1]).save(path / stack_file)
            else:
                _copy(self._extra_keras_files[i - 1], path / keras_file)
                self._extra_stacks[i - 1].save(path / stack_file)
        if self.members > 1:
            meta["members"] = self.members
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> NetworkModel:
        """The saved network. Saved with its dense stack (every network since the stack
        was written), it predicts in NumPy and reads the Keras model only when asked for
        `network`; saved before, it loads Keras now."""
        path = Path(path)
        meta = json.loads((path / _META_FILE).read_text())
        model = cls(
            Schema.from_dict(meta["schema"]),
            NetworkParams.from_dict(meta["params"]),
            Preprocessing.from_dict(meta["preprocessing"]),
            None,
            meta["target_mean"],
            meta["target_scale"],
        )
        model._keras_file = path / _WEIGHTS_FILE
        if "dense_stack" in meta:
            model._stack = DenseStack.load(path / _STACK_FILE, meta["dense_stack"])
            extra = range(1, meta.get("members", 1))
            model._extra_stacks = [
                DenseStack.load(path / _MEMBER_FILES[1].format(i), meta["dense_stack"])
                for i in extra
            ]
            model._extra_keras_files = [path / _MEMBER_FILES[0].format(i) for i in extra]
        else:
            model._saved_without_stack = True
            model.network  # noqa: B018 (read now: a model saved before the stack)
        return model


def _copy(source: Path, target: Path) -> None:
    """A saved file copied, unless it is already there (a model saved where it was loaded)."""
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)


# ------------------------------------------------------------------------------- pyfunc


class NetworkPyfunc(RawRowPyfunc):
    """The logged network: raw rows in; values or labels out, or class probabilities with
    params={'predict_method': 'predict_proba'} (as MLflow's sklearn flavour answers)."""

    def load_context(self, context):
        modelio.note_code(context.artifacts[NETWORK_ARTIFACT])
        self.model = NetworkModel.load(context.artifacts[NETWORK_ARTIFACT])
        # A model saved before its dense stack: trace the graph now, so the first served
        # request is not the slow one.
        self.model.raw_output(pd.DataFrame({c: [None] for c in self.model.schema.features}))


def log_network(
    model: NetworkModel,
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    version_tags: dict[str, str] | None = None,
):
    """Log the network as a raw-row pyfunc (`serving.log_from_code`); register it under
    model_name when given, with version_tags. Returns MLflow's ModelInfo."""
    info = log_from_code(
        model,
        NetworkPyfunc,
        schema,
        train,
        model_name,
        artifact=NETWORK_ARTIFACT,
        family=FAMILY,
        pip_requirements=_pip_requirements(),
        version_tags=version_tags,
    )
    log.info(
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


def network_of(pyfunc_model) -> NetworkModel | None:
    """The NetworkModel inside a loaded pyfunc, or None when it is another kind of model."""
    return served_model(pyfunc_model, NetworkModel)


def is_network(model_uri: str) -> bool:
    """Whether a logged model is an mlcycle network, from its MLmodel file alone."""
    return is_family(model_uri, FAMILY)


def load_network(model_uri: str) -> NetworkModel | None:
    """A logged mlcycle network, weights and preprocessing intact; None for other models."""
    if not is_network(model_uri):
        return None
    return network_of(mlflow.pyfunc.load_model(model_uri))
