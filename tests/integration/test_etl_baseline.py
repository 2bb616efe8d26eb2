"""The real etl and baseline steps: through `mlflow run . -e etl` and `-e baseline` on the
bundled data (and a bad input through `mlflow run`), as `python -m entrypoints.X` on a
small classification CSV with holes and for baseline alone; every bad input gets one
message and a non-zero exit."""

import json
import socket

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from entrypoints.baseline import main as baseline_command
from entrypoints.etl import main as etl_command
from mlcycle import config
from tests.conftest import ROOT, assert_ok, assert_raw_row_contract, flags, mlflow_run, run_step

pytestmark = pytest.mark.integration


def _runs(step):
    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = '{step}'",
    )


def test_etl_then_baseline_on_the_bundled_data(tracking_uri):
    assert_ok(mlflow_run("etl", tracking_uri))
    (etl,) = _runs("etl")
    assert etl.info.status == "FINISHED"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(etl.info.run_id, "datasets")}
    assert {
        f"datasets/{s}_{p}.parquet" for s in ("reference", "current") for p in ("train", "test")
    } <= artifacts
    schema = json.loads(mlflow.artifacts.load_text(f"runs:/{etl.info.run_id}/datasets/schema.json"))
    assert schema["task"] == "regression" and schema["target"] == "montant_pret"
    assert "nom" not in schema["numeric"] + schema["categorical"]
    assert {i.dataset.name for i in etl.inputs.dataset_inputs} == {"reference", "current"}
    assert etl.data.metrics["reference_removed_missing_target"] > 0

    result = mlflow_run("baseline", tracking_uri, {"etl_run": etl.info.run_id, "n_estimators": 30})
    assert_ok(result)
    (base,) = _runs("baseline")
    assert {"reference_test_r2", "current_test_mae", "current_test_rmse"} <= set(base.data.metrics)
    # The champion was trained on old data: the new data is where it struggles.
    assert base.data.metrics["reference_test_r2"] > base.data.metrics["current_test_r2"]
    model = mlflow.pyfunc.load_model("models:/loan-amount@champion")
    rows = pd.read_csv(ROOT / "data" / "df_new.csv").head(5)
    rows.loc[0, "revenu_estime_mois"] = np.nan
    rows.loc[1, "region"] = None
    predictions = model.predict(rows.drop(columns=["montant_pret", "nom", "prenom"]))
    assert len(predictions) == 5 and np.isfinite(predictions).all()
    assert_raw_row_contract("models:/loan-amount@champion", schema)


def test_baseline_alone_runs_etl_first_and_keeps_an_existing_champion(tracking_uri):
    result = run_step("baseline", tracking_uri, "--n-estimators", "10")
    assert_ok(result)
    assert "running etl on the defaults first" in result.stderr
    assert len(_runs("etl")) == 1
    client = mlflow.MlflowClient()
    first = client.get_model_version_by_alias("loan-amount", "champion").version
    assert_ok(run_step("baseline", tracking_uri, "--n-estimators", "10"))
    assert client.get_model_version_by_alias("loan-amount", "champion").version == first
    assert len(client.search_model_versions("name='loan-amount'")) == 2


def test_classification_csv_with_missing_values(tracking_uri, classification_csvs):
    old, new = classification_csvs
    etl = {"reference": old, "current": new, "target": "churn", "drop_columns": "customer_id"}
    assert_ok(run_step("etl", tracking_uri, *flags(etl)))
    baseline = {"model_name": "churn", "n_estimators": 20, "class_weight": "balanced"}
    assert_ok(run_step("baseline", tracking_uri, *flags(baseline)))
    (base,) = _runs("baseline")
    assert {"current_test_f1", "current_test_roc_auc", "reference_test_accuracy"} <= set(
        base.data.metrics
    )
    charts = {a.path for a in mlflow.MlflowClient().list_artifacts(base.info.run_id, "charts")}
    assert "charts/confusion_matrix_current_test.png" in charts
    assert "charts/roc_current_test.png" in charts
    model = mlflow.pyfunc.load_model("models:/churn@champion")
    rows = pd.read_csv(new).drop(columns=["churn", "customer_id"]).head(20)
    assert rows.isna().any().any()
    assert set(model.predict(rows)) <= {"yes", "no"}
    # Missing text reaches the forest as None from etl's parquet splits: still compiled.
    champion = mlflow.MlflowClient().get_model_version_by_alias("churn", "champion")
    assert champion.tags["mlcycle.forest_engine"] == "treelite", champion.tags


@pytest.fixture
def bad_inputs(tmp_path):
    good = ROOT / "data" / "df_old.csv"
    files = {
        "empty.csv": b"",
        "header.csv": b"a,b,montant_pret\n",
        "binary.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    frame = pd.read_csv(good)
    frame.drop(columns=["age", "region"]).to_csv(tmp_path / "no_age.csv", index=False)
    frame.assign(montant_pret="beaucoup").to_csv(tmp_path / "text_target.csv", index=False)
    frame.assign(kind="a").to_csv(tmp_path / "one_class.csv", index=False)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reference", "{d}/missing.csv"], "reference file not found: {d}/missing.csv"),
        (["--current", "{d}/empty.csv"], "current file {d}/empty.csv is empty"),
        (
            ["--reference", "{d}/header.csv"],
            "reference file {d}/header.csv has a header but no rows",
        ),
        (["--reference", "{d}/binary.csv"], "reference file {d}/binary.csv is not CSV text"),
        (["--target", "montant"], "target column 'montant' is not in the reference file"),
        (
            ["--reference", "{d}/text_target.csv", "--task", "regression"],
            "target column 'montant_pret' is not numeric",
        ),
        (
            ["--current", "{d}/no_age.csv"],
            "current file {d}/no_age.csv is missing feature columns of the reference: age, region",
        ),
        (
            ["--reference", "{d}/one_class.csv", "--target", "kind"],
            "classification target 'kind' of the reference data has a single class",
        ),
        (["--task", "clustering"], "parameter task must be one of"),
        (["--test-size", "1.5"], "parameter test_size must be between 0 and 1"),
    ],
)
def test_bad_input_gets_one_clear_message(tracking_uri, bad_inputs, args, message):
    """The real etl command, in-process (an MLflow import per case would cost minutes)."""
    args = [a.format(d=bad_inputs) for a in args]
    result = CliRunner().invoke(etl_command, args)
    assert result.exit_code == 2, result.output
    assert f"mlcycle error: {message.format(d=bad_inputs)}" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not [r for r in _runs("etl") if r.info.status == "FINISHED"]


def test_bad_input_through_mlflow_run_fails_the_run(tracking_uri, tmp_path):
    result = mlflow_run("etl", tracking_uri, {"reference": tmp_path / "nope.csv"})
    assert result.returncode != 0
    assert f"reference file not found: {tmp_path / 'nope.csv'}" in result.stderr
    assert [r.info.status for r in _runs("etl")] == ["FAILED"]


def test_baseline_refuses_an_etl_run_that_does_not_exist(tracking_uri):
    result = CliRunner().invoke(baseline_command, ["--etl-run", "0123456789abcdef"])
    assert result.exit_code == 2
    assert "parameter etl_run: no run with id '0123456789abcdef'" in result.stderr
    assert mlflow.MlflowClient().search_registered_models() == []


def test_an_unreachable_tracking_server_is_named_in_one_line_and_not_waited_for():
    """Bounded HTTP retries without any team.env: MLflow's default would retry for ~4
    minutes, past this subprocess timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed
    result = run_step("etl", url, timeout=150)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("mlcycle error:")]
    assert url in line and "Traceback" not in result.stderr
