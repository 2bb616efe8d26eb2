"""The forest as it is served: one MLflow pyfunc holding the fitted scikit-learn Pipeline
and the same trees compiled by Treelite.

Why: on one row the Pipeline spends ~2.5 ms in its ColumnTransformer and ~4 ms in the
forest's `predict` (per-call validation, per-tree dispatch), for a few thousand
comparisons. Here the rows go through the network's preprocessing (`Preprocessing`, in
float64: the ColumnTransformer's numbers bit for bit) and Treelite's interpreter (GTIL),
which walks the trees with float64 thresholds and leaves: the predictions are the
Pipeline's, not merely close (measured: largest relative difference 0.0 on the bundled
data). Large batches go to scikit-learn's own tree walk on the same matrix, which is
faster per row than GTIL's, on every core from PARALLEL_BATCH rows (see SMALL_BATCH).

Why Treelite rather than ONNX Runtime (skl2onnx): ONNX Runtime's tree ensembles compute
in float32 (up to 1.2e-6 relative off the Pipeline on the bundled data; skl2onnx 1.20's
double-precision graph is refused by onnxruntime 1.31), while the project promises equal
answers; Treelite is made for tree models, imports scikit-learn's forests directly and
needs only numpy and scipy, which scikit-learn already brings.

A pipeline whose compiled form cannot be built (another preprocessing, an estimator
Treelite does not import, a compiled answer that differs from the Pipeline's on the
training rows) is served by the Pipeline itself, and the log and the tag
`mlcycle.forest_engine` say so (`mlcycle.forest_fallback` gives the reason).

Saved as a folder: the Pipeline (skops, loaded with the trusted types MLflow's sklearn
flavour is given), the trees (Treelite's own format) and one JSON of the rest.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mlcycle import modelio
from mlcycle.data import Schema
from mlcycle.errors import MlcycleError
from mlcycle.network import (
    METADATA_KEY,
    MISSING_CATEGORY,
    BadInput,
    Preprocessing,
    _bad_request,
    _numeric_column,
)

log = logging.getLogger(__name__)

FAMILY = "rf"
FOREST_ARTIFACT = "forest"
ENGINE_TAG = "mlcycle.forest_engine"  # "treelite" or "pipeline"
FALLBACK_TAG = "mlcycle.forest_fallback"  # why the compiled form could not be built
COMPILED, FALLBACK = "treelite", "pipeline"
# Rows up to which GTIL walks the trees; above, scikit-learn's batch walk of the same
# trees on the same matrix is faster (measured here: GTIL ~40 us a row whatever the
# batch, scikit-learn ~4 ms a call + ~10 us a row: they cross near 130 rows).
SMALL_BATCH = 128
# Rows from which scikit-learn walks the trees on every core: its thread pool costs tens
# of ms a call, repaid only by large batches (measured here on 2 cores: 50,000 rows in
# 0.61 s instead of 0.93 s; 10,000 rows still faster on one thread).
PARALLEL_BATCH = 20_000
# Regression answers must equal the Pipeline's to this relative difference.
RTOL = 1e-9
# scikit-learn's SimpleImputer takes NaN for missing but None for a value: a Pipeline fitted
# on rows read from parquet (missing text is None there) learns None as a category, and
# answers a None and a NaN differently. The compiled path reproduces that, under this name.
NONE_CATEGORY = "\x00None"
_CHECK_ROWS = 2000  # training rows the compiled form is checked against at logging time
_FORMAT = 1
_PIPELINE_FILE = "pipeline.skops"
_TREES_FILE = "trees.treelite"
_META_FILE = "forest.json"


class NotCompiled(Exception):
    """Why a pipeline's compiled form cannot be built (the Pipeline serves instead)."""


# ------------------------------------------------------------------------ compilation


def preprocessing_of(transformer, schema: Schema) -> Preprocessing:
    """The fitted ColumnTransformer of mlcycle.features.build_preprocessor, read into the
    network's Preprocessing: its own medians, means, scales and categories (not refitted,
    so the float64 numbers are the same). Raises NotCompiled for any other shape."""
    from sklearn.compose import ColumnTransformer

    if not isinstance(transformer, ColumnTransformer):
        raise NotCompiled(f"the preprocessing is a {type(transformer).__name__}")
    parts = {name: (step, list(cols)) for name, step, cols in transformer.transformers_}
    if set(parts) - {"numeric", "categorical", "remainder"} or (
        "remainder" in parts and parts["remainder"][0] != "drop"
    ):
        raise NotCompiled(f"the preprocessing has other parts: {sorted(parts)}")
    numeric, numeric_cols = parts.get("numeric", (None, []))
    categorical, categorical_cols = parts.get("categorical", (None, []))
    if numeric_cols != list(schema.numeric) or categorical_cols != list(schema.categorical):
        raise NotCompiled("the preprocessing reads other columns than the schema's")
    medians, means, scales = _numeric_steps(numeric) if numeric_cols else ([], [], [])
    categories = _categorical_steps(categorical) if categorical_cols else []
    return Preprocessing(
        list(schema.numeric), medians, means, scales, list(schema.categorical), categories
    )


def _numeric_steps(pipeline) -> tuple[list[float], list[float], list[float]]:
    impute, scale = _steps(pipeline, ("SimpleImputer", "StandardScaler"), "numbers")
    if impute.strategy != "median" or not (scale.with_mean and scale.with_std):
        raise NotCompiled("numbers are not median-imputed and standard-scaled")
    medians = np.asarray(impute.statistics_, dtype="float64")
    if len(medians) != len(scale.mean_) or not np.isfinite(medians).all():
        # SimpleImputer drops a column that had no value at all in training.
        raise NotCompiled("a number column had no value in the training rows")
    return medians.tolist(), scale.mean_.tolist(), scale.scale_.tolist()


def _categorical_steps(pipeline) -> list[list[str]]:
    impute, onehot = _steps(pipeline, ("SimpleImputer", "OneHotEncoder"), "categories")
    plain = (
        impute.strategy == "constant"
        and impute.fill_value == MISSING_CATEGORY
        and onehot.handle_unknown == "ignore"
        and onehot.drop is None
        and onehot.min_frequency is None
        and onehot.max_categories is None
    )
    if not plain:
        raise NotCompiled("categories are not encoded as mlcycle.features encodes them")
    categories = [[NONE_CATEGORY if v is None else v for v in c] for c in onehot.categories_]
    if not all(isinstance(v, str) for c in categories for v in c):
        raise NotCompiled("a category column holds values that are not text")
    return categories


def _steps(pipeline, kinds: tuple[str, ...], what: str):
    steps = [step for _, step in getattr(pipeline, "steps", [])]
    if [type(step).__name__ for step in steps] != list(kinds):
        raise NotCompiled(f"{what} are not preprocessed by {' + '.join(kinds)}")
    return steps


def import_trees(estimator):
    """The estimator's trees as a Treelite model (float64 thresholds and leaves)."""
    import treelite

    try:
        return treelite.sklearn.import_model(estimator)
    except Exception as exc:  # noqa: BLE001 - Treelite refuses with its own error types
        raise NotCompiled(f"Treelite cannot import a {type(estimator).__name__}: {exc}") from exc


def compile_pipeline(pipeline, schema: Schema, rows: pd.DataFrame):
    """(Preprocessing, Treelite model) of a fitted Pipeline, checked against the Pipeline
    itself on rows (training rows and rows of nothing but missing values): the
    preprocessing must give the ColumnTransformer's matrix exactly, the trees its
    estimator's answers. Raises NotCompiled with the reason otherwise."""
    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) != 2:
        raise NotCompiled("the model is not a Pipeline of preprocessing and estimator")
    (_, transformer), (_, estimator) = steps
    preprocessing = preprocessing_of(transformer, schema)
    trees = import_trees(estimator)
    rows = _check_rows(rows, schema)
    expected = np.asarray(transformer.transform(rows), dtype="float64")
    matrix = preprocessing.transform(none_as_category(rows, schema.categorical), dtype="float64")
    if expected.shape != matrix.shape or not np.array_equal(expected, matrix):
        raise NotCompiled("the preprocessing does not give the ColumnTransformer's numbers")
    x = matrix.astype("float32")
    compiled = CompiledTrees(trees, schema.task)
    try:
        if schema.task == "classification":
            ours, theirs = compiled.proba(x), estimator.predict_proba(x)
            differs = not np.allclose(ours, theirs, rtol=RTOL, atol=RTOL)
        else:
            ours, theirs = compiled.values(x), estimator.predict(x)
            differs = not np.allclose(ours, theirs, rtol=RTOL, atol=0)
    except Exception as exc:  # noqa: BLE001 - e.g. GTIL refusing the model's input type
        raise NotCompiled(f"the compiled trees cannot answer: {exc}") from exc
    if differs:
        raise NotCompiled("the compiled trees do not answer as the Pipeline does")
    return preprocessing, trees


def _check_rows(rows: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Training rows, and two rows of nothing but missing values (text missing as None
    and as NaN, which the Pipeline tells apart)."""
    holes = {c: [np.nan, np.nan] for c in schema.numeric} | {
        c: pd.Series([None, np.nan], dtype=object) for c in schema.categorical
    }
    sample = rows[schema.features].head(_CHECK_ROWS)
    return pd.concat([sample, pd.DataFrame(holes)], ignore_index=True)


def none_as_category(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """The rows with None in a category column renamed NONE_CATEGORY (NaN stays missing),
    as the Pipeline's imputer sees them; a copy only when there is a None."""
    out = frame
    for col in categorical:
        if col not in frame.columns or frame[col].dtype != object:
            continue
        values = frame[col].to_numpy()
        is_none = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        if is_none.any():
            if out is frame:
                out = frame.copy()
            renamed = values.copy()
            renamed[is_none] = NONE_CATEGORY
            out[col] = renamed
    return out


class CompiledTrees:
    """Treelite's interpreter over float32 features, as scikit-learn compares them: its
    trees cast the matrix to float32 first, so a value between a float32 and its float64
    neighbour would otherwise go the other way at a threshold."""

    def __init__(self, trees, task: str):
        self.trees = trees
        self.task = task

    def _raw(self, x32: np.ndarray) -> np.ndarray:
        import treelite

        # One thread: a request is a row or a few, and a server answers several at once.
        out = treelite.gtil.predict(self.trees, x32.astype("float64"), nthread=1)
        return out.reshape(len(x32), -1)

    def values(self, x32: np.ndarray) -> np.ndarray:
        return self._raw(x32)[:, 0]

    def proba(self, x32: np.ndarray) -> np.ndarray:
        out = self._raw(x32)
        if out.shape[1] == 1:  # one probability: the second class's
            return np.column_stack([1.0 - out[:, 0], out[:, 0]])
        return out


# ------------------------------------------------------------------------------ model


class ForestModel:
    """In memory: the fitted Pipeline, and (when it could be built) its preprocessing and
    trees compiled. `predict`/`predict_proba` answer as the Pipeline does, faster."""

    def __init__(self, schema: Schema, pipeline, preprocessing=None, trees=None, fallback=None):
        self.schema = schema
        self.pipeline = pipeline
        self.preprocessing = preprocessing
        self.compiled = CompiledTrees(trees, schema.task) if trees is not None else None
        self.fallback = fallback
        estimator = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
        self.estimator = estimator
        # The same fitted trees (a shallow copy) with every core, for large batches; the
        # Pipeline's own estimator keeps the one thread it was logged with.
        self.parallel = copy.copy(estimator)
        if "n_jobs" in getattr(estimator, "__dict__", {}):
            self.parallel.n_jobs = -1
        self.classes_ = list(getattr(estimator, "classes_", []))

    @classmethod
    def build(cls, pipeline, schema: Schema, rows: pd.DataFrame) -> ForestModel:
        """Compile the Pipeline's trees, or keep the Pipeline alone and say why."""
        try:
            preprocessing, trees = compile_pipeline(pipeline, schema, rows)
        except NotCompiled as exc:
            log.warning("forest served by its scikit-learn Pipeline, not compiled: %s", exc)
            return cls(schema, pipeline, fallback=str(exc))
        return cls(schema, pipeline, preprocessing, trees)

    @property
    def engine(self) -> str:
        return COMPILED if self.compiled is not None else FALLBACK

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        frame = none_as_category(frame, self.schema.categorical)
        return self.preprocessing.transform(frame, dtype="float64").astype("float32")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows -> values (regression) or class labels, equal to Pipeline.predict."""
        if self.compiled is None:
            _check_numbers(frame, self.schema)
            return self.pipeline.predict(frame)
        x = self._matrix(frame)
        if self.schema.task == "classification":
            return self._labels(x, self._proba(x))
        if not len(x):
            return np.zeros(0)
        if len(x) <= SMALL_BATCH:
            return self.compiled.values(x)
        return self._batch_estimator(len(x)).predict(x)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, columns in classes_ order."""
        if self.schema.task != "classification":
            raise MlcycleError("predict_proba is for classification models only")
        if self.compiled is None:
            _check_numbers(frame, self.schema)
            return self.pipeline.predict_proba(frame)
        return self._proba(self._matrix(frame))

    def _proba(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros((0, len(self.classes_)))
        if len(x) <= SMALL_BATCH:
            return self.compiled.proba(x)
        return self._batch_estimator(len(x)).predict_proba(x)

    def _batch_estimator(self, rows: int):
        """scikit-learn's walk of the trees, on every core for large batches. Threads add
        the trees in another order (differences of ~1e-16); labels of near ties are
        settled by the one-thread estimator (_labels)."""
        return self.parallel if rows >= PARALLEL_BATCH else self.estimator

    def _labels(self, x: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """The most probable class; where two classes are within a rounding of each other
        (Treelite sums the trees in another order), scikit-learn decides, so the labels
        are always the Pipeline's."""
        labels = np.asarray(self.classes_, dtype=object)[proba.argmax(axis=1)]
        ordered = np.sort(proba, axis=1)
        close = (
            np.flatnonzero(ordered[:, -1] - ordered[:, -2] <= RTOL) if proba.shape[1] > 1 else []
        )
        if len(close):
            labels[close] = self.estimator.predict(x[close])
        return labels.astype(np.asarray(self.classes_).dtype)

    # -- persistence: a folder with the Pipeline, the trees and one JSON of the rest
    def save(self, path: str | Path) -> Path:
        import skops.io

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        data = skops.io.dumps(self.pipeline)
        untrusted = set(skops.io.get_untrusted_types(data=data)) - set(modelio.SKOPS_TRUSTED_TYPES)
        if untrusted:
            raise MlcycleError(
                f"the forest's pipeline holds types skops will not load: {sorted(untrusted)}"
            )
        (path / _PIPELINE_FILE).write_bytes(data)
        if self.compiled is not None:
            self.compiled.trees.serialize(str(path / _TREES_FILE))
        meta = {
            "format": _FORMAT,
            "family": FAMILY,
            "engine": self.engine,
            "fallback": self.fallback,
            "schema": self.schema.to_dict(),
            "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
        }
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ForestModel:
        import skops.io

        path = Path(path)
        meta = json.loads((path / _META_FILE).read_text())
        pipeline = skops.io.load(path / _PIPELINE_FILE, trusted=modelio.SKOPS_TRUSTED_TYPES)
        schema = Schema.from_dict(meta["schema"])
        if meta["engine"] != COMPILED:
            return cls(schema, pipeline, fallback=meta.get("fallback"))
        import treelite

        trees = treelite.Model.deserialize(str(path / _TREES_FILE))
        return cls(schema, pipeline, Preprocessing.from_dict(meta["preprocessing"]), trees)


def _check_numbers(frame: pd.DataFrame, schema: Schema) -> None:
    """Text in a number column, named as the compiled path names it (BadInput)."""
    for col in schema.numeric:
        _numeric_column(frame, col, len(frame))


# ------------------------------------------------------------------------------- pyfunc


class ForestPyfunc(mlflow.pyfunc.PythonModel):
    """The logged forest: raw rows in; values or labels out, or class probabilities with
    params={'predict_method': 'predict_proba'}, as the network answers. `schema` tells
    retrain what the model predicts (network.base_mismatch reads it)."""

    def __init__(self):
        self.model: ForestModel | None = None

    @property
    def schema(self) -> Schema | None:
        return self.model.schema if self.model else None

    def load_context(self, context):
        self.model = ForestModel.load(context.artifacts[FOREST_ARTIFACT])
        # Warm the path once, so the first served request is not the slow one.
        schema = self.model.schema
        empty = {c: [np.nan] for c in schema.numeric} | {c: [None] for c in schema.categorical}
        self.model.predict(pd.DataFrame(empty))

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
        except (BadInput, MlcycleError) as exc:
            raise _bad_request(str(exc)) from None


# Executed by MLflow to build the pyfunc on load ("models from code": MLflow 3.17 refuses
# pickled Python models by default). The mlcycle package travels with the model.
_MODEL_CODE = (
    "from mlflow.models import set_model\n"
    "from mlcycle.served_forest import ForestPyfunc\n"
    "set_model(ForestPyfunc())\n"
)


def log_forest(
    pipeline,
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    version_tags: dict[str, str] | None = None,
):
    """Log a fitted forest Pipeline as the served forest (raw-row signature and input
    example), compiled when it can be; register it under model_name when given, with
    version_tags and the engine tags in the same call. Returns MLflow's ModelInfo."""
    model = ForestModel.build(pipeline, schema, train)
    tags = {ENGINE_TAG: model.engine} | ({FALLBACK_TAG: model.fallback} if model.fallback else {})
    example = modelio.input_example(train, schema)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / FOREST_ARTIFACT)
        (tmp / "forest_model.py").write_text(_MODEL_CODE)
        package = Path(__file__).resolve().parent
        shutil.copytree(
            package,
            tmp / "code" / package.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        info = mlflow.pyfunc.log_model(
            name=modelio.MODEL_ARTIFACT,
            python_model=str(tmp / "forest_model.py"),
            artifacts={FOREST_ARTIFACT: str(tmp / FOREST_ARTIFACT)},
            code_paths=[str(tmp / "code" / package.name)],
            signature=modelio.signature(schema, example, model.predict(example)),
            input_example=example,
            metadata={METADATA_KEY: FAMILY, ENGINE_TAG: model.engine},
            pip_requirements=_pip_requirements(),
        )
    if mlflow.active_run() is not None:
        mlflow.set_tags(tags)
    if model_name:
        version = mlflow.register_model(
            info.model_uri, model_name, tags={**(version_tags or {}), **tags}
        )
        info.registered_model_version = version.version
    log.info(
        "logged forest %s (%s; registered version %s)",
        info.model_uri,
        model.engine,
        info.registered_model_version,
    )
    return info


def _pip_requirements() -> list[str]:
    return modelio.pip_requirements("scikit-learn", "numpy", "pandas", "skops", "treelite")


def forest_of(pyfunc_model) -> ForestModel | None:
    """The ForestModel inside a loaded pyfunc, or None when it is another kind of model."""
    try:
        inner = pyfunc_model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a custom Python model (e.g. an sklearn flavour)
        return None
    model = getattr(inner, "model", None)
    return model if isinstance(model, ForestModel) else None
