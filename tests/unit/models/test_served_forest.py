"""The served forest answers as its scikit-learn Pipeline does: compiled when it can be,
the Pipeline itself when it cannot (and it says why)."""

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

from mlcycle.errors import MlcycleError
from mlcycle.ingest import datagen
from mlcycle.ingest.data import Schema
from mlcycle.models.families.rf import ForestParams
from mlcycle.models.families.rf import fit as fit_forest
from mlcycle.models.features import build_preprocessor
from mlcycle.models.served_forest import (
    COMPILED,
    FALLBACK,
    PARALLEL_BATCH,
    READ_PAYS_OFF,
    SMALL_BATCH,
    ForestModel,
    ForestPyfunc,
)
from mlcycle.models.serving import BadInput
from mlcycle.steps.etl import EtlParams, prepare
from tests.conftest import make_classification_csv

SIZES = (1, 7, SMALL_BATCH, SMALL_BATCH + 1)  # both sides of the compiled/batch switch


def many(rows: pd.DataFrame) -> pd.DataFrame:
    """PARALLEL_BATCH rows drawn from rows: the batch walked on every core."""
    return rows.sample(PARALLEL_BATCH, replace=True, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def bundled():
    """The forest of the bundled data, as baseline fits it (fewer trees: same paths)."""
    result = prepare(EtlParams())
    schema, splits = result.schema, result.splits
    pipeline = fit_forest(schema, ForestParams(n_estimators=40), splits.reference_train)
    return schema, splits, pipeline, ForestModel.build(pipeline, schema, splits.reference_train)


def with_holes(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Raw rows as clients send them: missing numbers and categories, unseen categories."""
    frame = frame[schema.features].reset_index(drop=True).copy()
    number, category = schema.numeric[0], schema.categorical[-1]
    for col in schema.categorical:
        frame[col] = frame[col].astype(object)
    frame.loc[0::5, number] = np.nan
    frame.loc[1::5, category] = None
    frame.loc[2::5, category] = "never seen in training"
    frame.loc[4::5, schema.categorical[0]] = np.nan  # missing text as NaN, not None
    frame.loc[3, schema.features] = None
    return frame


def assert_same_values(model: ForestModel, pipeline, rows: pd.DataFrame) -> None:
    for n in (*SIZES, len(rows)):
        ours, theirs = model.predict(rows.head(n)), pipeline.predict(rows.head(n))
        assert len(ours) == n
        relative = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)
        assert relative.max() <= 1e-9, (n, relative.max())


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_regression_equals_the_pipeline_on_the_bundled_data(bundled):
    schema, splits, pipeline, model = bundled
    assert model.engine == COMPILED and model.fallback is None
    for name in ("reference_train", "reference_test", "current_test"):
        assert_same_values(model, pipeline, getattr(splits, name)[schema.features])
    # A batch of drifted new customers, with holes and categories never seen.
    drifted = datagen.generate(datagen.NEW, 600, seed=11)
    rows = with_holes(drifted, schema)
    assert rows.isna().any().any() and (rows == "never seen in training").any().any()
    assert_same_values(model, pipeline, rows)
    assert_same_values(model, pipeline, many(rows))


def test_the_compiled_trees_are_what_answers_small_batches(bundled):
    """Not the Pipeline under another name: the compiled trees alone give its answers."""
    schema, splits, pipeline, model = bundled
    rows = splits.current_test[schema.features].head(50)
    x = model.preprocessing.transform(rows, dtype="float64").astype("float32")
    np.testing.assert_array_equal(model.compiled.values(x), pipeline.predict(rows))
    # Features fed to the trees in float64 without the float32 cast go astray at
    # thresholds: the cast is what makes the answers equal.
    exact = pipeline.named_steps["preprocess"].transform(rows)
    assert not np.array_equal(model.compiled.values(exact), pipeline.predict(rows))


CHURN = Schema(
    "churn", "classification", ["tenure", "spend", "support_calls"], ["plan"], classes=["no", "yes"]
)


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
@pytest.mark.parametrize("missing_text", ["NaN", "None"])
@pytest.mark.parametrize("labels", ["binary", "three classes"])
def test_classification_gives_the_pipelines_labels_and_probabilities(
    tmp_path, labels, missing_text
):
    """Missing text in training as read_csv gives it (NaN, imputed '__missing__') and as
    etl's parquet splits give it (None, which the Pipeline learns as a category)."""
    frame = pd.read_csv(make_classification_csv(tmp_path / "churn.csv", rows=400, seed=3))
    if missing_text == "None":
        frame["plan"] = frame["plan"].astype(object).where(frame["plan"].notna(), None)
    schema = CHURN
    if labels == "three classes":
        frame["churn"] = pd.cut(frame["tenure"], 3, labels=False).fillna(0).astype(int)
        schema = Schema(CHURN.target, CHURN.task, CHURN.numeric, CHURN.categorical, [0, 1, 2])
    train, test = frame.iloc[:300], frame.iloc[300:]
    # Leaves of several rows: probabilities that are not all k/n_trees.
    params = ForestParams(n_estimators=30, min_samples_leaf=4, max_features="sqrt")
    pipeline = fit_forest(schema, params, train)
    model = ForestModel.build(pipeline, schema, train)
    assert model.engine == COMPILED, model.fallback
    rows = with_holes(pd.concat([test, train.head(100)]), schema)
    for part in (*(rows.head(n) for n in (*SIZES, len(rows))), many(rows)):
        assert list(model.predict(part)) == list(pipeline.predict(part))
        np.testing.assert_allclose(
            model.predict_proba(part), pipeline.predict_proba(part), rtol=1e-9, atol=1e-12
        )
        labels, proba = model.predict_with_proba(part)  # score's one walk for both
        assert list(labels) == list(pipeline.predict(part))
        # (threads add the trees in any order on the largest batch: ~1e-16 apart)
        np.testing.assert_allclose(proba, model.predict_proba(part), rtol=1e-12, atol=1e-15)
    assert model.classes_ == list(pipeline.classes_)


def test_text_in_a_number_column_names_the_column(bundled):
    schema, splits, _, model = bundled
    row = splits.current_test[schema.features].head(1).astype(object)
    row.iloc[0, row.columns.get_loc("age")] = "old"
    with pytest.raises(BadInput, match="column 'age' should be numeric but holds 'old'"):
        model.predict(row)


def _foreign_preprocessing(schema: Schema) -> ColumnTransformer:
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", MinMaxScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [("numeric", numeric, schema.numeric), ("categorical", categorical, schema.categorical)]
    )


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("an estimator Treelite does not import", "Treelite cannot import a Ridge"),
        (
            "another preprocessing",
            "numbers are not preprocessed by SimpleImputer + StandardScaler",
        ),
    ],
)
@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_pipeline_that_cannot_be_compiled_is_served_by_itself(bundled, tmp_path, kind, reason):
    schema, splits, _, _ = bundled
    train = splits.reference_train
    if kind.startswith("an estimator"):
        pipeline = Pipeline([("preprocess", build_preprocessor(schema)), ("model", Ridge())])
    else:
        forest = RandomForestClassifier(n_estimators=5, random_state=0)
        pipeline = Pipeline([("preprocess", _foreign_preprocessing(schema)), ("model", forest)])
        train = train.assign(
            **{schema.target: train[schema.target] > train[schema.target].median()}
        )
    pipeline.fit(train[schema.features], train[schema.target])
    model = ForestModel.build(pipeline, schema, train)
    assert model.engine == FALLBACK and model.compiled is None
    assert reason in model.fallback
    rows = splits.current_test[schema.features]
    np.testing.assert_array_equal(model.predict(rows), pipeline.predict(rows))
    loaded = ForestModel.load(model.save(tmp_path / "forest"))
    assert loaded.engine == FALLBACK and reason in loaded.fallback
    np.testing.assert_array_equal(loaded.predict(rows), pipeline.predict(rows))
    # The same one-line answer for text in a number as the compiled path gives.
    bad = rows.head(1).astype(object)
    bad.iloc[0, bad.columns.get_loc("age")] = "old"
    with pytest.raises(BadInput, match="column 'age'"):
        loaded.predict(bad)


def test_saved_and_loaded_it_answers_the_same(bundled, tmp_path):
    schema, splits, pipeline, model = bundled
    loaded = ForestModel.load(model.save(tmp_path / "forest"))
    assert loaded.engine == COMPILED
    rows = with_holes(splits.current_test, schema)
    np.testing.assert_array_equal(loaded.predict(rows), pipeline.predict(rows))
    np.testing.assert_array_equal(loaded.predict(rows.head(3)), pipeline.predict(rows.head(3)))
    # The Pipeline travels too, for users: feature importances, its own predict.
    assert len(loaded.pipeline.named_steps["model"].feature_importances_) > 0


def test_the_pyfunc_answers_predict_proba_on_request_and_refuses_other_methods(tmp_path):
    frame = pd.read_csv(make_classification_csv(tmp_path / "churn.csv", rows=200))
    pipeline = fit_forest(CHURN, ForestParams(n_estimators=10), frame)
    pyfunc = ForestPyfunc()
    pyfunc.model = ForestModel.build(pipeline, CHURN, frame)
    rows = frame[CHURN.features].head(4)
    proba = pyfunc.predict(None, rows, params={"predict_method": "predict_proba"})
    assert list(proba.columns) == ["no", "yes"]
    np.testing.assert_allclose(proba.to_numpy(), pipeline.predict_proba(rows), rtol=1e-9)
    assert list(pyfunc.predict(None, rows)) == list(pipeline.predict(rows))
    assert pyfunc.model.schema is CHURN  # what serving.base_mismatch reads
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="predict_method must be predict or predict_proba"):
        pyfunc.predict(None, rows, params={"predict_method": "decision_function"})


def test_predict_proba_of_a_regression_forest_is_a_user_error(bundled):
    schema, splits, _, model = bundled
    with pytest.raises(MlcycleError, match="classification models only"):
        model.predict_proba(splits.current_test[schema.features].head(1))


def test_a_loaded_forest_answers_small_batches_without_reading_its_pipeline(bundled, tmp_path):
    schema, splits, pipeline, model = bundled
    loaded = ForestModel.load(model.save(tmp_path / "forest"))
    rows = with_holes(splits.current_test, schema)
    small = rows.head(SMALL_BATCH)
    np.testing.assert_array_equal(loaded.predict(small), pipeline.predict(small))
    assert loaded._pipeline is None  # the trees and the JSON answered alone
    # Hundreds of rows too, while nothing asked for the Pipeline: reading it costs more.
    assert len(rows) > SMALL_BATCH
    np.testing.assert_array_equal(loaded.predict(rows), pipeline.predict(rows))
    assert loaded._pipeline is None
    # A batch whose walk repays the reading reads it (scikit-learn's walk is the faster
    # one there), once.
    large = rows.sample(READ_PAYS_OFF + 1, replace=True, random_state=1)
    np.testing.assert_array_equal(loaded.predict(large), pipeline.predict(large))
    assert loaded._pipeline is not None
    read = loaded.pipeline
    loaded.predict(rows)
    assert loaded.pipeline is read


def test_once_asked_for_the_pipeline_walks_batches_past_small(bundled, tmp_path):
    schema, splits, pipeline, model = bundled
    loaded = ForestModel.load(model.save(tmp_path / "forest"))
    rows = with_holes(splits.current_test, schema)
    loaded.prefetch().join(timeout=120)
    estimator = loaded.pipeline.steps[-1][1]
    expected = pipeline.predict(rows)
    walked = []
    original = type(estimator).predict
    type(estimator).predict = lambda self, x: walked.append(len(x)) or original(self, x)
    try:
        answered = loaded.predict(rows)
        loaded.predict(rows.head(SMALL_BATCH))
    finally:
        type(estimator).predict = original
    np.testing.assert_array_equal(answered, expected)
    assert walked == [len(rows)]  # the batch past SMALL_BATCH only


def test_prefetch_reads_the_pipeline_in_a_thread(bundled, tmp_path):
    _, _, _, model = bundled
    loaded = ForestModel.load(model.save(tmp_path / "forest"))
    thread = loaded.prefetch()
    thread.join(timeout=120)
    assert loaded._pipeline is not None and loaded.prefetch() is None


def test_a_batch_past_small_waits_for_the_pipeline_prefetch_is_reading(
    bundled, tmp_path, monkeypatch
):
    """score's first chunk: scikit-learn's walk on both cores once the read ends beats
    the compiled trees' walk beside the read (made slow here, so the batch surely comes
    while it reads)."""
    from mlcycle.models import served_forest

    schema, splits, pipeline, model = bundled
    loaded = ForestModel.load(model.save(tmp_path / "forest"))
    rows = with_holes(splits.current_test, schema)
    assert SMALL_BATCH < len(rows) <= READ_PAYS_OFF
    expected = pipeline.predict(rows)
    read = served_forest._load_pipeline

    def slow_read(source):
        time.sleep(0.5)
        return read(source)

    monkeypatch.setattr(served_forest, "_load_pipeline", slow_read)
    walked = []
    estimator_class = type(pipeline.steps[-1][1])
    original = estimator_class.predict
    monkeypatch.setattr(
        estimator_class, "predict", lambda self, x: walked.append(len(x)) or original(self, x)
    )
    thread = loaded.prefetch()
    np.testing.assert_array_equal(loaded.predict(rows), expected)
    assert walked == [len(rows)] and loaded._pipeline is not None
    thread.join(timeout=120)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_a_forest_saved_without_its_estimator_facts_still_loads(tmp_path, task, bundled):
    """Forests saved before the classes were written beside the trees: a regressor still
    loads lazily, a classifier reads its Pipeline at load time (its labels are there)."""
    if task == "regression":
        schema, splits, pipeline, model = bundled
        frame = splits.current_test
    else:
        frame = pd.read_csv(make_classification_csv(tmp_path / "churn.csv", rows=200))
        schema, pipeline = CHURN, fit_forest(CHURN, ForestParams(n_estimators=10), frame)
        model = ForestModel.build(pipeline, schema, frame)
    path = model.save(tmp_path / "forest")
    meta = json.loads((path / "forest.json").read_text())
    del meta["estimator"]
    (path / "forest.json").write_text(json.dumps(meta))
    loaded = ForestModel.load(path)
    assert loaded.engine == COMPILED
    assert (loaded._pipeline is None) == (task == "regression")
    rows = frame[schema.features].head(5)
    np.testing.assert_array_equal(loaded.predict(rows), pipeline.predict(rows))
    assert loaded.classes_ == list(getattr(pipeline, "classes_", []))


def test_labels_keep_the_dtype_of_the_classes_through_save_and_load(tmp_path):
    frame = pd.read_csv(make_classification_csv(tmp_path / "churn.csv", rows=200))
    pipeline = fit_forest(CHURN, ForestParams(n_estimators=10), frame)
    model = ForestModel.build(pipeline, CHURN, frame)
    loaded = ForestModel.load(model.save(tmp_path / "forest"))
    rows = frame[CHURN.features].head(7)
    ours, theirs = loaded.predict(rows), pipeline.predict(rows)
    assert ours.dtype == theirs.dtype and list(ours) == list(theirs)
    assert loaded.classes_ == list(pipeline.classes_)


LOAD_IN_A_FRESH_PROCESS = """
import pickle, sys, mlcycle.served_forest, mlflow.pyfunc
from mlcycle.models.served_forest import READ_PAYS_OFF
import numpy as np
import pandas as pd


def refuse(*args, **kwargs):
    raise AssertionError("something was unpickled")


pickle.load = pickle.loads = refuse
from tests.data.stored_models.store import HERE, read_rows
import json
record = json.loads((HERE / "forest.json").read_text())
model = mlflow.pyfunc.load_model(str(HERE / "forest"))
rows = read_rows(record["rows"])
assert model.predict(rows).tolist() == record["predict"]
heavy = sorted(m for m in ("sklearn", "skops", "skops.io") if m in sys.modules)
assert not heavy, heavy
copies = READ_PAYS_OFF // len(rows) + 1  # past READ_PAYS_OFF: the Pipeline's walk
big = pd.concat([rows] * copies, ignore_index=True)
# On every core (past PARALLEL_BATCH) threads add the trees in another order: ~1e-16.
np.testing.assert_allclose(model.predict(big), record["predict"] * copies, rtol=1e-12)
assert "skops.io" in sys.modules
print("ok")
"""


@pytest.mark.integration  # a fresh process importing MLflow: seconds
def test_a_logged_forest_loads_without_scikit_learn_and_never_unpickles(tmp_path):
    """In a fresh process with MLflow's pickle loading switched off, the stored forest
    (logged by an earlier commit) answers single rows with neither scikit-learn nor skops
    imported, and a large batch through its Pipeline, read by skops' trusted-type check."""
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false", PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_code_differing_from_the_copy_logged_with_the_model_is_said(tmp_path, caplog):
    import mlcycle
    from mlcycle.models.modelio import CODE_DIGEST_FILE, code_digest, note_code

    package = Path(mlcycle.__file__).resolve().parent
    copy = tmp_path / "code" / "mlcycle"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    artifact = tmp_path / "forest"
    artifact.mkdir()
    assert note_code(artifact)  # a model logged before digests were kept: nothing to say
    (artifact / CODE_DIGEST_FILE).write_text(code_digest(copy))
    assert note_code(artifact) and not caplog.records
    (copy / "errors.py").write_text((copy / "errors.py").read_text() + "\n# changed\n")
    (artifact / CODE_DIGEST_FILE).write_text(code_digest(copy))
    with caplog.at_level(logging.INFO, logger="mlcycle.models.modelio"):
        assert not note_code(artifact)
    assert "other mlcycle code than the one answering it" in caplog.text
