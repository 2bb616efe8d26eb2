"""Log models so that they take raw rows: a signature and an input example of raw rows."""

from __future__ import annotations

import hashlib
import logging
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, DataType
from mlflow.types import Schema as TypeSchema
from mlflow.types.schema import AnyType

import mlcycle
from mlcycle.ingest.data import Schema

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
# In a served model's artifact folder: the digest of the mlcycle code logged with it.
CODE_DIGEST_FILE = "mlcycle_code.sha256"
# MLflow 3.17 saves sklearn models with skops, which refuses types it cannot vouch for.
# These are the forest's and the boosted trees' own node storage and numpy dtypes of a
# model we fitted ourselves.
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


def pip_requirements(*packages: str) -> list[str]:
    """Pinned to what is installed. Given explicitly because MLflow's inference of them
    reloads the model in a subprocess, which costs ~10 s a model."""
    return [f"{name}=={metadata.version(name)}" for name in ("mlflow", *packages)]


def input_example(train: pd.DataFrame, schema: Schema, rows: int = 3) -> pd.DataFrame:
    """A few raw training rows, as a client would send them."""
    return train[schema.features].head(rows).reset_index(drop=True)


def signature(
    schema: Schema, example: pd.DataFrame, predictions, predict_method_param: bool = True
) -> ModelSignature:
    """Raw-row inputs. Every column is required (a request without one gets "Model is
    missing inputs [...]"), and any value may be missing: MLflow lets None through a
    required column. With predict_method_param, the model also answers
    params={"predict_method": "predict_proba"} (MLflow's sklearn pyfunc ignores params,
    so forests do not declare it).

    Numeric columns are typed `Any`: MLflow refuses int64 where `double` is declared, and
    a CSV read by pandas makes a whole-number column int64. The preprocessing converts
    them; text where a number belongs fails there (a 400 from the scoring server)."""
    params = {"predict_method": "predict"} if predict_method_param else None
    inferred = infer_signature(example, predictions, params=params)
    inputs = TypeSchema(
        [ColSpec(AnyType(), name) for name in schema.numeric]
        + [ColSpec(DataType.string, name) for name in schema.categorical]
    )
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def log_sklearn(pipeline, schema: Schema, train: pd.DataFrame, model_name: str | None):
    """Log (and register, when model_name is given) a fitted sklearn Pipeline."""
    example = input_example(train, schema)
    info = mlflow.sklearn.log_model(
        pipeline,
        name=MODEL_ARTIFACT,
        signature=signature(schema, example, pipeline.predict(example), predict_method_param=False),
        input_example=example,
        registered_model_name=model_name,
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        pip_requirements=pip_requirements("scikit-learn", "numpy", "pandas", "skops"),
    )
    log.info(
        "logged model %s (registered version %s)", info.model_uri, info.registered_model_version
    )
    return info


def code_digest(package: Path) -> str:
    """sha256 of a copy of the mlcycle package: its Python files, by path and content."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" not in path.parts:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def note_code(artifact: str | Path) -> bool:
    """Whether the mlcycle code answering is the copy logged with the model (its digest
    beside the model's artifacts); when not, one log line says which code answers.
    Models logged before the digest was kept say nothing (True)."""
    saved = Path(artifact) / CODE_DIGEST_FILE
    if not saved.is_file():
        return True
    package = Path(mlcycle.__file__).resolve().parent
    if saved.read_text().strip() == code_digest(package):
        return True
    log.info(
        "the model was logged with other mlcycle code than the one answering it (%s): "
        "the package already imported answers, not the copy logged with the model",
        package,
    )
    return False
