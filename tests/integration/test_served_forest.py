"""The served forest as MLflow logs, loads and serves it: compiled trees inside one pyfunc,
loaded outside the project, behind `mlflow models serve`; the fallback says so; forests
logged by earlier versions (MLflow's stock sklearn flavour) still load and serve."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from mlcycle.ingest.data import Schema
from mlcycle.models.families.rf import ForestParams
from mlcycle.models.families.rf import fit as fit_forest
from mlcycle.models.features import build_preprocessor
from mlcycle.models.modelio import log_sklearn
from mlcycle.models.served_forest import (
    COMPILED,
    ENGINE_TAG,
    FALLBACK,
    FALLBACK_TAG,
    forest_of,
    log_forest,
)
from mlcycle.models.serving import base_mismatch
from mlcycle.steps.etl import EtlParams, prepare
from tests.conftest import ROOT, assert_raw_row_contract, make_classification_csv, step_env
from tests.integration.test_clients import check_server, raw_rows, serve, stop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundled():
    result = prepare(EtlParams())
    schema, train = result.schema, result.splits.reference_train
    return schema, train, fit_forest(schema, ForestParams(n_estimators=20), train)


def _log(log, pipeline, schema, train, name):
    with mlflow.start_run() as run:
        info = log(pipeline, schema, train, name)
    version = mlflow.MlflowClient().get_model_version(name, info.registered_model_version)
    return info, version, mlflow.get_run(run.info.run_id)


def _relative(a, b) -> float:
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    return float((np.abs(a - b) / np.abs(b)).max())


_LOAD_ELSEWHERE = """
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.read_json(sys.argv[2], orient="split")
import mlcycle
print(json.dumps({"predictions": [float(v) for v in model.predict(rows)],
                  "mlcycle": mlcycle.__file__}))
"""


def test_the_logged_forest_is_compiled_and_loads_outside_the_project(
    tracking_uri, bundled, tmp_path
):
    schema, train, pipeline = bundled
    info, version, run = _log(log_forest, pipeline, schema, train, "loan-forest")
    assert version.tags[ENGINE_TAG] == COMPILED and FALLBACK_TAG not in version.tags
    assert run.data.tags[ENGINE_TAG] == COMPILED
    uri = f"models:/loan-forest/{info.registered_model_version}"
    assert_raw_row_contract(uri, schema.to_dict())
    assert mlflow.models.get_model_info(uri).metadata["mlcycle.family"] == "rf"

    # A fresh Python in a folder of its own: the project is not importable there, the
    # mlcycle package that travels with the model is.
    rows_file = tmp_path / "rows.json"
    raw_rows(20).to_json(rows_file, orient="split", index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = step_env(tracking_uri)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_ELSEWHERE, uri, str(rows_file)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert not answer["mlcycle"].startswith(str(ROOT)), answer["mlcycle"]
    rows = pd.read_json(rows_file, orient="split")
    assert _relative(answer["predictions"], pipeline.predict(rows)) <= 1e-9

    # In this process too, and the Pipeline itself is there for users.
    loaded = mlflow.pyfunc.load_model(uri)
    assert _relative(loaded.predict(rows), pipeline.predict(rows)) <= 1e-9
    assert forest_of(loaded).engine == COMPILED
    assert len(forest_of(loaded).pipeline.named_steps["model"].estimators_) == 20


def test_a_forest_that_cannot_be_compiled_is_logged_with_its_reason(tracking_uri, bundled):
    schema, train, _ = bundled
    pipeline = Pipeline([("preprocess", build_preprocessor(schema)), ("model", Ridge())])
    pipeline.fit(train[schema.features], train[schema.target])
    info, version, run = _log(log_forest, pipeline, schema, train, "loan-ridge")
    assert version.tags[ENGINE_TAG] == FALLBACK == run.data.tags[ENGINE_TAG]
    assert "Treelite cannot import a Ridge" in version.tags[FALLBACK_TAG]
    assert run.data.tags[FALLBACK_TAG] == version.tags[FALLBACK_TAG]
    loaded = mlflow.pyfunc.load_model(f"models:/loan-ridge/{info.registered_model_version}")
    rows = raw_rows(10)
    np.testing.assert_allclose(loaded.predict(rows), pipeline.predict(rows), rtol=1e-12)


def test_retrain_reads_what_either_kind_of_forest_predicts(tracking_uri, bundled, tmp_path):
    """base_mismatch on real loaded forests: the new one says its task and target, a
    forest logged by an earlier version (stock sklearn flavour) its task and columns."""
    schema, _, _ = bundled
    churn = pd.read_csv(make_classification_csv(tmp_path / "churn.csv", rows=120))
    churn_schema = Schema(
        "churn", "classification", ["tenure", "spend", "support_calls"], ["plan"], ["no", "yes"]
    )
    pipeline = fit_forest(churn_schema, ForestParams(n_estimators=5), churn)
    for log, name in ((log_forest, "churn-new"), (log_sklearn, "churn-old")):
        info, _, _ = _log(log, pipeline, churn_schema, churn, name)
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{info.registered_model_version}")
        reason = base_mismatch(loaded, schema)
        assert "it is a classification model and the data is regression" in reason, name
        assert "it reads columns the data lacks (plan, spend, support_calls, tenure)" in reason
        assert base_mismatch(loaded, churn_schema) is None, name
        if log is log_forest:
            assert "it predicts 'churn', not the data's target 'montant_pret'" in reason


@pytest.mark.parametrize("env_manager", ["local", "uv"])
def test_served_compiled_forest_answers_raw_rows_and_names_the_column(
    tracking_uri, bundled, env_manager
):
    """uv builds the model's own environment from its requirements (the first time takes
    about a minute here, then it is cached under ~/.mlflow/envs)."""
    schema, train, pipeline = bundled
    info, _, _ = _log(log_forest, pipeline, schema, train, "loan-forest")
    proc, base = serve(
        tracking_uri,
        f"models:/loan-forest/{info.registered_model_version}",
        env_manager=env_manager,
        timeout=900,
    )
    try:
        wrong_type = check_server(base)
        rows = raw_rows(10)
        body = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
        answer = requests.post(f"{base}/invocations", json={"dataframe_records": body}, timeout=30)
    finally:
        stop(proc)
    assert "column 'age' should be numeric but holds 'old'" in wrong_type["message"]
    assert answer.status_code == 200, answer.text
    assert _relative(answer.json()["predictions"], pipeline.predict(rows)) <= 1e-9


def test_served_classification_forest_answers_labels_and_probabilities(tracking_uri, tmp_path):
    churn = pd.read_csv(make_classification_csv(tmp_path / "churn.csv", rows=200))
    schema = Schema(
        "churn", "classification", ["tenure", "spend", "support_calls"], ["plan"], ["no", "yes"]
    )
    pipeline = fit_forest(schema, ForestParams(n_estimators=15, min_samples_leaf=3), churn)
    info, _, _ = _log(log_forest, pipeline, schema, churn, "churn")
    rows = churn[schema.features].tail(12).reset_index(drop=True).astype(object)
    rows.loc[0, "plan"] = "enterprise"  # never seen
    rows.loc[1, "spend"] = None
    records = rows.where(rows.notna(), None).to_dict(orient="records")
    proc, base = serve(tracking_uri, f"models:/churn/{info.registered_model_version}")
    try:
        labels = requests.post(
            f"{base}/invocations", json={"dataframe_records": records}, timeout=30
        )
        proba = requests.post(
            f"{base}/invocations",
            json={"dataframe_records": records, "params": {"predict_method": "predict_proba"}},
            timeout=30,
        )
    finally:
        stop(proc)
    assert labels.status_code == 200 and proba.status_code == 200, (labels.text, proba.text)
    expected = pd.DataFrame(records)
    assert labels.json()["predictions"] == list(pipeline.predict(expected))
    served = pd.DataFrame(proba.json()["predictions"])
    assert list(served.columns) == ["no", "yes"]
    np.testing.assert_allclose(served.to_numpy(), pipeline.predict_proba(expected), rtol=1e-9)


def test_a_forest_logged_by_an_earlier_version_still_loads_and_serves(tracking_uri, bundled):
    """Champions registered before the compiled forest: MLflow's stock sklearn flavour."""
    schema, train, pipeline = bundled
    info, version, _ = _log(log_sklearn, pipeline, schema, train, "loan-old")
    assert ENGINE_TAG not in version.tags
    uri = f"models:/loan-old/{info.registered_model_version}"
    assert "sklearn" in mlflow.models.get_model_info(uri).flavors
    rows = raw_rows(10)
    np.testing.assert_allclose(
        mlflow.pyfunc.load_model(uri).predict(rows), pipeline.predict(rows), rtol=1e-12
    )
    proc, base = serve(tracking_uri, uri)
    try:
        check_server(base, names_column=False)
    finally:
        stop(proc)
