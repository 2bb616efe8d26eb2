"""What both served models (the network, `mlcycle.models.network`; the forest,
`mlcycle.models.served_forest`) share: raw rows read into numbers (`Preprocessing`, with the 400
answers of a row it cannot read), the pyfunc's `predict` and its `predict_method`, the
models-from-code logging, unwrapping a loaded pyfunc, and whether a loaded model models
a schema's data (`base_mismatch`).

Imports only `mlcycle.ingest.data` and `mlcycle.models.modelio` of the package (and copies
the package with each model it logs): the served models build on it, never the reverse."""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from pandas.api import types as ptypes

import mlcycle
from mlcycle.ingest.data import Schema
from mlcycle.models import modelio
from mlcycle.models.modelio import CODE_DIGEST_FILE, code_digest

log = logging.getLogger(__name__)

METADATA_KEY = "mlcycle.family"
# The category a missing text value becomes, in the Pipeline's imputer
# (mlcycle.models.features) and in Preprocessing alike.
MISSING_CATEGORY = "__missing__"


# ----------------------------------------------------------------------- raw-row input


class BadInput(ValueError):
    """A row the model cannot read (text where a number belongs), named by column."""


def numeric_column(frame: pd.DataFrame, col: str, n: int) -> np.ndarray:
    """A number column as float64, NaN for missing; text, true/false or an infinity is a
    BadInput naming the column (a request can be corrected; null is how it says
    'missing')."""
    if col not in frame.columns:
        return np.full(n, np.nan)
    odd = _first(frame[col], lambda v: isinstance(v, bool | np.bool_ | str | bytes))
    if odd is not None:
        raise BadInput(f"column {col!r} should be numeric but holds {odd!r}")
    try:
        values = frame[col].to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        raise BadInput(
            f"column {col!r} should be numeric but holds {frame[col][bad].iloc[0]!r}"
        ) from None
    infinite = np.isinf(values)
    if infinite.any():
        raise BadInput(
            f"column {col!r} holds {float(values[infinite][0])!r}: numbers must be finite "
            "(null for a missing value)"
        )
    return values


def _first(column: pd.Series, wrong, fine: tuple[str, ...] = ()):
    """The first value of an object (or bool) column for which wrong(value) holds; not
    looked for value by value when pandas' inference of the column's values (missing
    ones skipped) is one of `fine` (measured: the loop cost ~30 ms a 50,000-row column)."""
    if ptypes.is_bool_dtype(column):
        return bool(column.iloc[0]) if len(column) else None
    if column.dtype != object:
        return None
    if fine and ptypes.infer_dtype(column, skipna=True) in fine:
        return None
    return next((v for v in column.tolist() if wrong(v)), None)


def category_column(column: pd.Series, col: str) -> pd.Series:
    """A category column holds text or nothing: a number or true/false there is a
    BadInput naming the column (7 is not the category "7" the model learned)."""
    odd = _first(
        column,
        lambda v: not (v is None or isinstance(v, str) or _is_nan(v)),
        fine=("string", "empty"),
    )
    if odd is None and ptypes.is_numeric_dtype(column) and column.notna().any():
        odd = column.dropna().iloc[0]
    if odd is not None:
        raise BadInput(f"column {col!r} should be text but holds {odd!r}")
    return column


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


# Both families compute in float32 downstream (the network's layers, scikit-learn's tree
# comparisons): a standardised value beyond its range turns into inf and the answer
# into NaN, which is not even valid JSON.
_FLOAT32_MAX = float(np.finfo("float32").max)


def _check_range(col: str, values: np.ndarray, scaled: np.ndarray) -> None:
    outside = ~(np.abs(scaled) <= _FLOAT32_MAX)
    if outside.any():
        raise BadInput(
            f"column {col!r} holds {float(values[outside][0])!r}, out of the range this model "
            "computes with"
        )


@dataclass
class Preprocessing:
    """The preprocessing of mlcycle.models.features.build_preprocessor (median impute + standard
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
            values = numeric_column(frame, col, n)
            values = np.where(np.isnan(values), self.medians[j], values)
            scaled = (values - self.means[j]) / self.scales[j]
            _check_range(col, values, scaled)
            out[:, j] = scaled
        offset = len(self.numeric)
        for col, cats in zip(self.categorical, self.categories, strict=True):
            index = {c: i for i, c in enumerate(cats)}
            given = col in frame.columns
            raw = category_column(frame[col], col) if given else pd.Series([None] * n)
            codes = _category_codes(raw, cats, index)
            known = codes >= 0
            out[np.flatnonzero(known), offset + codes[known]] = 1.0
            offset += len(cats)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(**d)


def _category_codes(raw: pd.Series, cats: list[str], index: dict[str, int]) -> np.ndarray:
    """Each value's position in cats (-1: unseen), missing values (None, NaN) as the
    '__missing__' category: what `_category_values` and a lookup give, in pandas' hash
    table instead of a Python loop (values are text or missing: category_column)."""
    values = raw.to_numpy(dtype=object)
    codes = pd.Index(cats, dtype=object).get_indexer(values).astype("int64", copy=False)
    unknown = np.flatnonzero(codes < 0)  # unseen or missing: only these are looked at
    if len(unknown):
        missing = unknown[pd.isna(values[unknown])]
        codes[missing] = index.get(MISSING_CATEGORY, -1)
    return codes


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


# ------------------------------------------------------------------------------ pyfunc


def bad_request(message: str):
    """What the scoring server answers with a 400 carrying this message; any other
    exception becomes its generic "unexpected error while evaluating the model"."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class RawRowPyfunc(mlflow.pyfunc.PythonModel):
    """A logged model: raw rows in; values or labels out, or class probabilities with
    params={'predict_method': 'predict_proba'} (as MLflow's sklearn flavour answers).
    A subclass loads `model` (with predict, predict_proba and classes_) in load_context;
    the errors of ANSWERED_AS_400 become a 400 carrying their message."""

    ANSWERED_AS_400: tuple[type[Exception], ...] = (BadInput,)

    def __init__(self):
        self.model = None

    # The pd.DataFrame hint tells MLflow that the signature given at logging time rules.
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        method = (params or {}).get("predict_method", "predict")
        if method not in ("predict", "predict_proba"):
            raise bad_request(f"predict_method must be predict or predict_proba, got {method!r}")
        try:
            if method == "predict_proba":
                return pd.DataFrame(self.model.predict_proba(frame), columns=self.model.classes_)
            return self.model.predict(frame)
        except self.ANSWERED_AS_400 as exc:
            raise bad_request(str(exc)) from None


def log_from_code(
    model,
    pyfunc: type[RawRowPyfunc],
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    *,
    artifact: str,
    family: str,
    pip_requirements: list[str],
    metadata: dict[str, str] | None = None,
    version_tags: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
):
    """Log a served model (`model.save(folder)`; loaded back by `pyfunc`) as a pyfunc named
    'model' with a raw-row signature and input example, its MLmodel metadata naming the
    family (and holding `metadata`); `tags` go on the active run and,
    with version_tags, on the version registered under model_name when given (in the
    same call: one registry write instead of one per tag). Returns MLflow's ModelInfo.

    "Models from code": MLflow executes a file that names `pyfunc` by its module path
    (MLflow 3.17 refuses pickled Python models by default), so that path is a contract
    with every model logged. The mlcycle package travels with the model (code_paths), so
    a server outside the project folder can import it.

    Which copy answers: MLflow puts the model's copy first on sys.path, so a process that
    has not imported mlcycle yet (`mlflow models serve`, a user's script) runs the code
    the model was logged with; a process that has (every step, the suite) runs its own,
    so a fix of the checkout applies to models logged before it. The digest of the copy
    is saved beside the model (CODE_DIGEST_FILE) and `modelio.note_code` logs when the answering
    code differs from it: the two never differ silently."""
    tags = tags or {}
    example = modelio.input_example(train, schema)
    code = (
        "from mlflow.models import set_model\n"
        f"from {pyfunc.__module__} import {pyfunc.__name__}\n"
        f"set_model({pyfunc.__name__}())\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / artifact)
        (tmp / f"{artifact}_model.py").write_text(code)
        package = Path(mlcycle.__file__).resolve().parent
        shutil.copytree(
            package,
            tmp / "code" / package.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        (tmp / artifact / CODE_DIGEST_FILE).write_text(code_digest(tmp / "code" / package.name))
        info = mlflow.pyfunc.log_model(
            name=modelio.MODEL_ARTIFACT,
            python_model=str(tmp / f"{artifact}_model.py"),
            artifacts={artifact: str(tmp / artifact)},
            code_paths=[str(tmp / "code" / package.name)],
            signature=modelio.signature(schema, example, model.predict(example)),
            input_example=example,
            metadata={METADATA_KEY: family, **(metadata or {})},
            pip_requirements=pip_requirements,
        )
    if tags and mlflow.active_run() is not None:
        mlflow.set_tags(tags)
    if model_name:
        version = mlflow.register_model(
            info.model_uri, model_name, tags={**(version_tags or {}), **tags}
        )
        info.registered_model_version = version.version
    return info


# ------------------------------------------------------------------- a loaded pyfunc


def served_model(pyfunc_model, kind: type = object):
    """The mlcycle model (a NetworkModel, a ForestModel) inside a loaded pyfunc when it is
    of `kind`, else None (another kind of model, or not a custom Python model)."""
    try:
        inner = pyfunc_model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a custom Python model (e.g. an sklearn flavour)
        return None
    model = getattr(inner, "model", None)
    return model if isinstance(model, kind) and model is not None else None


def is_family(model_uri: str, family: str) -> bool:
    """Whether a logged model is an mlcycle model of this family, from its MLmodel file."""
    try:
        info = mlflow.models.get_model_info(model_uri)
    except Exception:  # noqa: BLE001 - missing models are reported by whoever loads them
        return False
    return (info.metadata or {}).get(METADATA_KEY) == family


def base_mismatch(pyfunc_model, schema: Schema) -> str | None:
    """Why a base model (any loaded pyfunc) does not model this schema's data: another
    task, another target, or input columns the data lacks. None when it does, or when the
    model does not say (no signature, an unknown flavour): scoring it will tell.

    Data columns the base does not read are no mismatch: a champion that predates a new
    column still scores the rows (MLflow drops what its signature does not name)."""
    reasons = []
    described = _carried_schema(pyfunc_model)
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
    """The schema an mlcycle model carries (the one it was logged with), or None."""
    schema = getattr(served_model(pyfunc_model), "schema", None)
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
