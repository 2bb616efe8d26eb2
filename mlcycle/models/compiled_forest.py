"""A forest Pipeline compiled for serving: its ColumnTransformer read into
`serving.Preprocessing` (the same float64 numbers) and its trees imported by Treelite,
both checked against the Pipeline itself before they are used (`compile_pipeline`).
Why compile, and why Treelite: `mlcycle.models.served_forest`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlcycle.ingest.data import Schema
from mlcycle.models.serving import MISSING_CATEGORY, Preprocessing

# Regression answers must equal the Pipeline's to this relative difference.
RTOL = 1e-9
# scikit-learn's SimpleImputer takes NaN for missing but None for a value: a Pipeline fitted
# on rows read from parquet (missing text is None there) learns None as a category, and
# answers a None and a NaN differently. The compiled path reproduces that, under this name.
NONE_CATEGORY = "\x00None"
_CHECK_ROWS = 2000  # training rows the compiled form is checked against at logging time


def input_dtype(estimator) -> str:
    """The dtype the estimator compares its inputs in: scikit-learn's forests cast the
    matrix to float32 first, its HistGradientBoosting keeps float64 (its thresholds are
    float64: a float32 row would go the other way at some of them)."""
    return "float64" if type(estimator).__name__.startswith("HistGradientBoosting") else "float32"


def softmax_outputs(estimator) -> bool:
    """Whether the estimator's class probabilities are a softmax of the trees' sums (the
    boosted trees with more than two classes): Treelite computes that softmax in float32
    (up to 6e-8 off scikit-learn), so CompiledTrees takes the sums and does it in float64
    (then 2e-16 off)."""
    return input_dtype(estimator) == "float64" and len(getattr(estimator, "classes_", [])) > 2


class NotCompiled(Exception):
    """Why a pipeline's compiled form cannot be built (the Pipeline serves instead)."""


def preprocessing_of(transformer, schema: Schema) -> Preprocessing:
    """The fitted ColumnTransformer of mlcycle.models.features.build_preprocessor, read into the
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
        raise NotCompiled("categories are not encoded as mlcycle.models.features encodes them")
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
    x = matrix.astype(input_dtype(estimator), copy=False)
    compiled = CompiledTrees(trees, schema.task, softmax_outputs(estimator))
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
        is_none = np.asarray(values == None, dtype=bool)  # noqa: E711 - elementwise
        if is_none.any():
            if out is frame:
                out = frame.copy()
            renamed = values.copy()
            renamed[is_none] = NONE_CATEGORY
            out[col] = renamed
    return out


class CompiledTrees:
    """Treelite's interpreter over the features as scikit-learn compares them
    (`input_dtype`): a forest's trees cast the matrix to float32 first, so a value between
    a float32 and its float64 neighbour would otherwise go the other way at a threshold."""

    def __init__(self, trees, task: str, softmax: bool = False):
        self.trees = trees
        self.task = task
        self.softmax = softmax  # probabilities as softmax_outputs says

    def _raw(self, x: np.ndarray, margin: bool = False) -> np.ndarray:
        import treelite

        # One thread: a request is a row or a few, and a server answers several at once.
        out = treelite.gtil.predict(
            self.trees, x.astype("float64", copy=False), nthread=1, pred_margin=margin
        )
        return out.reshape(len(x), -1)

    def values(self, x: np.ndarray) -> np.ndarray:
        return self._raw(x)[:, 0]

    def proba(self, x: np.ndarray) -> np.ndarray:
        if self.softmax:
            from scipy.special import softmax

            return softmax(self._raw(x, margin=True), axis=1)
        out = self._raw(x)
        if out.shape[1] == 1:  # one probability: the second class's
            return np.column_stack([1.0 - out[:, 0], out[:, 0]])
        return out
