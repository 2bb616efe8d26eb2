"""The forest as it is served: one MLflow pyfunc holding the fitted scikit-learn Pipeline
and the same trees compiled by Treelite.

Why: on one row the Pipeline spends ~2.5 ms in its ColumnTransformer and ~4 ms in the
forest's `predict` (per-call validation, per-tree dispatch), for a few thousand
comparisons. Here the rows go through the served models' preprocessing
(`serving.Preprocessing`, in float64: the ColumnTransformer's numbers bit for bit) and
Treelite's interpreter (GTIL; the trees compiled by `mlcycle.models.compiled_forest`), which
walks the trees with float64 thresholds and leaves: the predictions are the Pipeline's,
not merely close (measured: largest relative difference 0.0 on the bundled data). Large
batches go to scikit-learn's own tree walk on the same matrix, which is faster per row
than GTIL's, on every core from PARALLEL_BATCH rows (see SMALL_BATCH).

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
flavour is given), the trees (Treelite's own format) and one JSON of the rest (the
preprocessing, the schema, the estimator's classes). Loading reads the trees and the JSON
only: the Pipeline is deserialised when first needed (ForestModel), so a loaded forest
answers single rows without importing scikit-learn or skops.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models import modelio
from mlcycle.models.compiled_forest import (
    RTOL,
    CompiledTrees,
    NotCompiled,
    compile_pipeline,
    input_dtype,
    none_as_category,
    softmax_outputs,
)
from mlcycle.models.serving import (
    BadInput,
    Preprocessing,
    RawRowPyfunc,
    log_from_code,
    numeric_column,
    served_model,
)

log = logging.getLogger(__name__)

FAMILY = "rf"
BOOSTED = "hgb"  # the boosted trees (mlcycle.models.families.hgb), served by this class too
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
# Rows up to which GTIL still answers while the Pipeline is not in memory (monitor,
# retrain: a few calls on hundreds or thousands of rows): reading it costs ~3 s (measured
# on a 100-tree forest here), what scikit-learn saves over GTIL on ~60,000 rows at ~50 us
# a row. A caller of many batches (score) reads it in a thread (prefetch) meanwhile.
READ_PAYS_OFF = 50_000
_FORMAT = 1
_PIPELINE_FILE = "pipeline.skops"
_TREES_FILE = "trees.treelite"
_META_FILE = "forest.json"


# ------------------------------------------------------------------------------ model


class ForestModel:
    """In memory: the fitted Pipeline, and (when it could be built) its preprocessing and
    trees compiled. `predict`/`predict_proba` answer as the Pipeline does, faster.

    Loaded from a folder, the Pipeline stays on disk until something needs it (the
    fallback engine, a batch of more than READ_PAYS_OFF rows, or of more than SMALL_BATCH
    once it is in memory, a near tie between two classes, a user reading
    `pipeline`): the compiled trees and the preprocessing answer without scikit-learn,
    and deserialising the Pipeline costs seconds (skops' import alone scans every
    scikit-learn estimator; measured in benchmarks/RESULTS.md)."""

    def __init__(
        self,
        schema: Schema,
        pipeline=None,
        preprocessing=None,
        trees=None,
        fallback=None,
        *,
        facts: dict | None = None,
        source: Path | None = None,
    ):
        self.schema = schema
        self.preprocessing = preprocessing
        self.fallback = fallback
        self._pipeline = pipeline
        self._source = source  # the Pipeline's skops file, read on first need
        self._lock = threading.Lock()
        self._prefetching: threading.Thread | None = None
        self._parallel = None
        facts = facts if facts is not None else estimator_facts(self.estimator)
        self._facts = facts
        self.dtype = facts["dtype"]
        self.classes_ = list(np.asarray(facts["classes"], dtype=facts["classes_dtype"]))
        self._classes_dtype = np.dtype(facts["classes_dtype"])
        self.compiled = None
        if trees is not None:
            self.compiled = CompiledTrees(trees, schema.task, facts["softmax"])

    @property
    def pipeline(self):
        """The fitted scikit-learn Pipeline, deserialised (once) when first asked for."""
        if self._pipeline is None:
            with self._lock:
                if self._pipeline is None:
                    self._pipeline = _load_pipeline(self._source)
        return self._pipeline

    @property
    def estimator(self):
        pipeline = self.pipeline
        return pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline

    @property
    def parallel(self):
        """The same fitted trees (a shallow copy) with every core, for large batches; the
        Pipeline's own estimator keeps the one thread it was logged with."""
        if self._parallel is None:
            parallel = copy.copy(self.estimator)
            if "n_jobs" in getattr(parallel, "__dict__", {}):
                parallel.n_jobs = -1
            self._parallel = parallel
        return self._parallel

    def prefetch(self) -> threading.Thread | None:
        """Deserialise the Pipeline in a thread, so that a caller about to predict large
        batches (score) has it when its first batch is read; None when already loaded."""
        if self._pipeline is not None:
            return None
        thread = threading.Thread(target=lambda: self.pipeline, name="forest-pipeline")
        thread.daemon = True
        thread.start()
        self._prefetching = thread
        return thread

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
        return self.preprocessing.transform(frame, dtype="float64").astype(self.dtype, copy=False)

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
        if self._compiled_walks(len(x)):
            return self.compiled.values(x)
        return self._batch_estimator(len(x)).predict(x)

    def _compiled_walks(self, rows: int) -> bool:
        """GTIL for small batches, and for any batch up to READ_PAYS_OFF rows while the
        Pipeline is on disk and nobody reads it; else scikit-learn's walk. A batch past
        SMALL_BATCH waits for a Pipeline prefetch is reading: what is left of the read
        (1.4 s in all for 100 trees here) and scikit-learn's walk on both cores (0.6 s for
        50,000 rows) beat GTIL's (~50 us a row on one core, sharing the cores with the
        read); walking the first chunk beside the read made score's 100,000 rows take
        2.1 s or 3.0 s depending on which finished first."""
        if rows <= SMALL_BATCH:
            return True
        if self._prefetching is not None and self._prefetching.is_alive():
            return False
        return self._pipeline is None and rows <= READ_PAYS_OFF

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, columns in classes_ order."""
        if self.schema.task != "classification":
            raise MlcycleError("predict_proba is for classification models only")
        if self.compiled is None:
            _check_numbers(frame, self.schema)
            return self.pipeline.predict_proba(frame)
        return self._proba(self._matrix(frame))

    def predict_with_proba(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) of a classifier from one walk of the trees: what
        predict and predict_proba give, for half the work (score asks for both)."""
        if self.schema.task != "classification":
            raise MlcycleError("predict_proba is for classification models only")
        if self.compiled is None:
            _check_numbers(frame, self.schema)
            return self.pipeline.predict(frame), self.pipeline.predict_proba(frame)
        x = self._matrix(frame)
        proba = self._proba(x)
        return self._labels(x, proba), proba

    def _proba(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros((0, len(self.classes_)))
        if self._compiled_walks(len(x)):
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
        return labels.astype(self._classes_dtype)

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
            "family": BOOSTED if self.dtype == "float64" else FAMILY,
            "engine": self.engine,
            "fallback": self.fallback,
            "schema": self.schema.to_dict(),
            "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
            "estimator": self._facts,
        }
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ForestModel:
        """The forest saved in path. The compiled trees (Treelite's own format, numbers
        only) and the preprocessing (JSON) are read now; the Pipeline when it is needed,
        through skops with its trusted-type check (nothing is unpickled)."""
        path = Path(path)
        meta = json.loads((path / _META_FILE).read_text())
        schema = Schema.from_dict(meta["schema"])
        source = path / _PIPELINE_FILE
        facts = _saved_facts(meta)
        if meta["engine"] != COMPILED or facts is None:
            # The Pipeline answers (fallback), or an earlier classifier's labels are only
            # in it: read it now, so a broken file fails the load, not a request.
            pipeline = _load_pipeline(source)
            if meta["engine"] != COMPILED:
                return cls(schema, pipeline, fallback=meta.get("fallback"))
        else:
            pipeline = None
        import treelite

        trees = treelite.Model.deserialize(str(path / _TREES_FILE))
        preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        return cls(schema, pipeline, preprocessing, trees, facts=facts, source=source)


def estimator_facts(estimator) -> dict:
    """What answering needs of the estimator besides its trees, as JSON: its classes
    (and their dtype, which the labels keep), the dtype it compares inputs in, and
    whether its probabilities are a softmax (compiled_forest.softmax_outputs)."""
    classes = np.asarray(getattr(estimator, "classes_", []))
    return {
        "classes": classes.tolist(),
        "classes_dtype": classes.dtype.str if classes.dtype != object else "object",
        "dtype": input_dtype(estimator),
        "softmax": softmax_outputs(estimator),
    }


def _saved_facts(meta: dict) -> dict | None:
    """The estimator's facts saved with the forest; for a forest saved before they were,
    what its family and task say (a regressor's), or None (a classifier's classes are
    only in its Pipeline)."""
    if "estimator" in meta:
        return meta["estimator"]
    if meta["schema"]["task"] != "regression":
        return None
    dtype = "float64" if meta.get("family") == BOOSTED else "float32"
    return {"classes": [], "classes_dtype": "<f8", "dtype": dtype, "softmax": False}


def _load_pipeline(source: Path | None):
    """The Pipeline from its skops file, only if it holds nothing but trusted types
    (skops' defaults and modelio.SKOPS_TRUSTED_TYPES): skops refuses any other type
    before building anything, and executes no pickle."""
    if source is None:
        raise MlcycleError("the forest was built without its Pipeline")
    import skops.io

    log.info("reading the forest's scikit-learn Pipeline (%s)", source.name)
    return skops.io.load(source, trusted=modelio.SKOPS_TRUSTED_TYPES)


def _check_numbers(frame: pd.DataFrame, schema: Schema) -> None:
    """Text in a number column, named as the compiled path names it (BadInput)."""
    for col in schema.numeric:
        numeric_column(frame, col, len(frame))


# ------------------------------------------------------------------------------- pyfunc


class ForestPyfunc(RawRowPyfunc):
    """The logged forest: raw rows in; values or labels out, or class probabilities with
    params={'predict_method': 'predict_proba'}, as the network answers."""

    # Also a 400 here (as before the two shared this class): predict_proba asked of a
    # regression forest.
    ANSWERED_AS_400 = (BadInput, MlcycleError)

    def load_context(self, context):
        modelio.note_code(context.artifacts[FOREST_ARTIFACT])
        self.model = ForestModel.load(context.artifacts[FOREST_ARTIFACT])
        # Warm the path once, so the first served request is not the slow one.
        schema = self.model.schema
        empty = {c: [np.nan] for c in schema.numeric} | {c: [None] for c in schema.categorical}
        self.model.predict(pd.DataFrame(empty))


def log_forest(
    pipeline,
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    version_tags: dict[str, str] | None = None,
    family: str = FAMILY,
):
    """Log a fitted forest Pipeline (or boosted trees: family hgb) as the served forest
    (`serving.log_from_code`), compiled when it can be; register it under model_name when
    given, with version_tags and the engine tags in the same call. Returns MLflow's
    ModelInfo."""
    model = ForestModel.build(pipeline, schema, train)
    tags = {ENGINE_TAG: model.engine} | ({FALLBACK_TAG: model.fallback} if model.fallback else {})
    info = log_from_code(
        model,
        ForestPyfunc,
        schema,
        train,
        model_name,
        artifact=FOREST_ARTIFACT,
        family=family,
        pip_requirements=modelio.pip_requirements(
            "scikit-learn", "numpy", "pandas", "skops", "treelite"
        ),
        metadata={ENGINE_TAG: model.engine},
        version_tags=version_tags,
        tags=tags,
    )
    log.info(
        "logged %s %s (%s; registered version %s)",
        "forest" if family == FAMILY else family,
        info.model_uri,
        model.engine,
        info.registered_model_version,
    )
    return info


def forest_of(pyfunc_model) -> ForestModel | None:
    """The ForestModel inside a loaded pyfunc, or None when it is another kind of model."""
    return served_model(pyfunc_model, ForestModel)
