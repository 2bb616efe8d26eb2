"""The blend candidate for real: the blend step over candidate runs logged as optimize and
retrain log them (a forest, boosted trees, a network, each with its slice predictions),
its decision, and the blend it registers answering the same in-process, behind
`mlflow models serve` (raw rows, the 400 naming the column) and through `score` on the
pandas engine and on a real local Spark."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from mlcycle import config
from mlcycle.ingest.datasets import load_splits
from mlcycle.lifecycle import aliases
from mlcycle.models import blending, selection
from mlcycle.models.families import hgb, nn, rf
from mlcycle.models.network import NetworkParams
from mlcycle.models.served_blend import (
    FAMILY,
    MEMBERS_TAG,
    BlendModel,
    blend_of,
    log_blend,
    member_of,
    requirements,
)
from mlcycle.steps import blend as blend_step
from mlcycle.steps import score as score_step
from tests.conftest import assert_raw_row_contract, make_classification_csv
from tests.integration.test_clients import check_server, raw_rows, serve, stop
from tests.integration.test_lifecycle import _etl

pytestmark = pytest.mark.integration

NAME = "loan-blend"
CHURN = "churn-blend"
SEED = 42
PARAMS = {
    "refit-rf": (rf, rf.ForestParams(n_estimators=20, n_jobs=1)),
    "refit-hgb": (hgb, hgb.BoostingParams(max_iter=100)),
    "retrain": (nn, NetworkParams(hidden_units=(16,), epochs=15, patience=0, seed=SEED)),
}


def _candidate(label: str, etl_run: str, model_name: str) -> str:
    """A candidate run as optimize logs one: the model refitted on current train,
    registered, and its parameters' predictions on the judging slice from a fit without
    it. (retrain's network is itself fitted without the slice: here alike.)"""
    family, params = PARAMS[label]
    schema, splits = load_splits(etl_run)
    with mlflow.start_run(run_name=label) as run:
        fit_rows, judge = selection.judging_slice(splits.current_train, SEED)
        served = family.fit(schema, params, fit_rows if family is nn else splits.current_train)
        info = family.log(
            served, schema, splits.current_train, model_name,
            version_tags={"mlcycle.etl_run": etl_run},
        )  # fmt: skip
        mlflow.set_tag(selection.VERSION_TAG, str(info.registered_model_version))
        _, predictions = selection.slice_fit(family, schema, params, splits.current_train, SEED)
        if family is nn:  # retrain's: the served network's own answers on the slice
            predictions = blending.slice_predictions(served, schema, judge)
        blending.log_slice_predictions(predictions)
    return run.info.run_id


@pytest.fixture(scope="module")
def loan(module_tracking_uri):
    etl_run = _etl()
    runs = {label: _candidate(label, etl_run, NAME) for label in PARAMS}
    return etl_run, runs


def _blend(etl_run: str, runs: dict, model_name: str, confidence: float = 0.95):
    candidates = ",".join(f"{label}={run}" for label, run in runs.items())
    params = blend_step.BlendParams(
        etl_run=etl_run, model_name=model_name, candidates=candidates, confidence=confidence
    ).validate()
    with mlflow.start_run(run_name="blend") as run:
        version = blend_step.execute(params)
    return version, mlflow.get_run(run.info.run_id)


def test_the_step_judges_the_blend_on_the_slice_and_registers_it_when_kept(loan):
    etl_run, runs = loan
    strict, strict_run = _blend(etl_run, runs, NAME)
    tags, metrics = strict_run.data.tags, strict_run.data.metrics
    assert tags["mlcycle.blend_kept"] == str(strict is not None).lower()
    assert metrics["validation_r2"] > 0.5
    assert metrics["blend_gain_ci_low"] <= metrics["blend_gain"] <= metrics["blend_gain_ci_high"]
    assert (metrics["blend_gain_ci_low"] > 0) == (strict is not None), tags["mlcycle.blend_reason"]
    assert "cross-fitted r2" in tags["mlcycle.blend_reason"]

    # At the median (confidence 0.5) a blend gaining on the slice at all is kept.
    version, run = _blend(etl_run, runs, NAME, confidence=0.5)
    assert version is not None, run.data.tags["mlcycle.blend_reason"]
    assert run.data.tags[selection.VERSION_TAG] == version
    assert aliases.read_state(NAME)[config.CHALLENGER] == version
    mv = mlflow.MlflowClient().get_model_version(NAME, version)
    assert mv.tags["mlcycle.family"] == FAMILY and mv.tags["mlcycle.etl_run"] == etl_run
    # The members are the candidates' registered versions, carried, not re-trained.
    weights = {
        k[len("weight.") :]: v for k, v in run.data.metrics.items() if k.startswith("weight.")
    }
    model = blend_of(mlflow.pyfunc.load_model(f"models:/{NAME}/{version}"))
    assert dict(zip(model.labels, model.weights, strict=True)) == pytest.approx(weights)
    for label, member_version in zip(model.labels, model.versions, strict=True):
        assert member_version == mlflow.get_run(runs[label]).data.tags[selection.VERSION_TAG]
    assert MEMBERS_TAG in mv.tags
    logged = mlflow.get_logged_model(mlflow.models.get_model_info(mv.source).model_id)
    assert any(m.key == "current_test_r2" for m in logged.metrics)


def test_candidates_without_slice_predictions_are_left_out_with_the_reason(loan):
    etl_run, runs = loan
    with mlflow.start_run(run_name="old-candidate") as old:
        pass
    version, run = _blend(etl_run, {"old": old.info.run_id, "retrain": runs["retrain"]}, NAME)
    assert version is None
    reason = run.data.tags["mlcycle.blend_reason"]
    assert "1 candidate(s) with slice predictions: no blend" in reason
    assert "old: no slice predictions logged" in reason


def _scored(model_uri: str, csv, output, engine: str = "pandas") -> pd.DataFrame:
    params = score_step.ScoreParams(
        model_uri=model_uri, input=str(csv), output=str(output), engine=engine,
        spark_master="local[2]",
    )  # fmt: skip
    with mlflow.start_run():
        score_step.execute(params)
    return pd.read_parquet(output).sort_values("row", ignore_index=True)


def test_the_blend_answers_the_same_in_process_served_and_scored_on_both_engines(
    loan, module_tracking_uri, tmp_path
):
    etl_run, runs = loan
    version, _ = _blend(etl_run, runs, NAME, confidence=0.5)
    uri = f"models:/{NAME}/{version}"
    schema, _ = load_splits(etl_run)
    assert_raw_row_contract(uri, schema.to_dict())
    pyfunc = mlflow.pyfunc.load_model(uri)
    model = blend_of(pyfunc)
    assert len(model.members) >= 2
    rows = raw_rows(20)
    in_process = pyfunc.predict(rows)
    members = [mlflow.pyfunc.load_model(f"models:/{NAME}/{v}") for v in model.versions]
    weighted = sum(
        w * np.asarray(m.predict(rows)) for w, m in zip(model.weights, members, strict=True)
    )
    np.testing.assert_allclose(in_process, weighted, rtol=1e-12)

    proc, base = serve(module_tracking_uri, uri)
    try:
        wrong_type = check_server(base)
        body = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
        served = requests.post(f"{base}/invocations", json={"dataframe_records": body}, timeout=30)
    finally:
        stop(proc)
    assert "column 'age' should be numeric but holds 'old'" in wrong_type["message"]
    assert served.status_code == 200, served.text
    np.testing.assert_allclose(served.json()["predictions"], in_process, rtol=1e-9)

    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    pandas = _scored(uri, csv, tmp_path / "pandas.parquet")
    np.testing.assert_allclose(pandas["prediction"], in_process, rtol=1e-9)
    spark = _scored(uri, csv, tmp_path / "spark.parquet", engine="spark")
    np.testing.assert_allclose(spark["prediction"], pandas["prediction"], rtol=1e-9)


def test_a_classifier_blend_serves_labels_and_probabilities_as_score_writes_them(
    module_tracking_uri, tmp_path
):
    old = make_classification_csv(tmp_path / "old.csv", rows=400, seed=1)
    new = make_classification_csv(tmp_path / "new.csv", rows=500, seed=2, shift=1.0)
    etl_run = _etl(reference=str(old), current=str(new), target="churn", drop_columns="customer_id")
    runs = {label: _candidate(label, etl_run, CHURN) for label in ("refit-rf", "refit-hgb")}
    # Served whatever the slice decides: blended as the step blends a kept pair.
    versions = [mlflow.get_run(r).data.tags[selection.VERSION_TAG] for r in runs.values()]
    uris = [f"models:/{CHURN}/{v}" for v in versions]
    members = [member_of(mlflow.pyfunc.load_model(u)) for u in uris]
    schema, splits = load_splits(etl_run)
    model = BlendModel(schema, members, [0.6, 0.4], list(runs), versions)
    needs = requirements([mlflow.pyfunc.get_model_dependencies(u) for u in uris])
    with mlflow.start_run(run_name="blend"):
        info = log_blend(
            model, schema, splits.current_train, CHURN, needs,
            version_tags={"mlcycle.etl_run": etl_run},
        )  # fmt: skip
    uri = f"models:/{CHURN}/{info.registered_model_version}"
    pyfunc = mlflow.pyfunc.load_model(uri)
    frame = pd.read_csv(new)
    rows = frame.drop(columns=["churn", "customer_id"]).head(15)
    labels = pyfunc.predict(rows)
    proba = pyfunc.predict(rows, params={"predict_method": "predict_proba"})
    assert list(proba.columns) == ["no", "yes"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(labels) == list(np.where(proba["yes"] > proba["no"], "yes", "no"))

    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    proc, base = serve(module_tracking_uri, uri)
    try:
        served_labels = requests.post(
            f"{base}/invocations", json={"dataframe_records": records}, timeout=30
        )
        served_proba = requests.post(
            f"{base}/invocations",
            json={"dataframe_records": records, "params": {"predict_method": "predict_proba"}},
            timeout=30,
        )
    finally:
        stop(proc)
    assert served_labels.json()["predictions"] == list(labels)
    np.testing.assert_allclose(pd.DataFrame(served_proba.json()["predictions"]), proba, rtol=1e-9)

    csv = tmp_path / "batch.csv"
    frame.head(15).drop(columns=["churn"]).to_csv(csv, index=False)
    scored = _scored(uri, csv, tmp_path / "churn.parquet")
    assert scored["prediction"].tolist() == list(labels)
    np.testing.assert_allclose(scored[["proba_no", "proba_yes"]].to_numpy(), proba, rtol=1e-9)
