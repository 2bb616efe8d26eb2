"""The real `mlflow run . -e retrain`: from a fresh store (etl first, trains from scratch),
then continuing a network champion; a classification CSV and bad parameters in-process
with the real click command (each `mlflow run` costs ~25 s of imports here)."""

import json
import logging

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.dummy import DummyRegressor

from entrypoints.baseline import main as baseline_command
from entrypoints.etl import main as etl_command
from entrypoints.retrain import main as retrain_command
from mlcycle import config
from mlcycle.network import load_network
from tests.conftest import ROOT, assert_ok, mlflow_run

pytestmark = pytest.mark.integration


def _runs(step):
    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = '{step}'",
        order_by=["attributes.start_time ASC"],
    )


def _aliases(name):
    return {k: str(v) for k, v in mlflow.MlflowClient().get_registered_model(name).aliases.items()}


def _invoke(command, *args):
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _raw_rows_with_holes(n=6):
    rows = pd.read_csv(ROOT / "data" / "df_new.csv").head(n)
    rows.loc[0, "revenu_estime_mois"] = np.nan
    rows.loc[1, "region"] = None
    rows.loc[2, "age"] = None
    return rows.drop(columns=["montant_pret", "nom", "prenom"])


def test_fresh_store_trains_from_scratch_then_finetunes_a_network_champion(tracking_uri, caplog):
    caplog.set_level(logging.INFO)
    result = mlflow_run("retrain", tracking_uri, {"epochs": 2})
    assert_ok(result)
    assert "running etl on the defaults first" in result.stderr
    assert "no champion yet: training from scratch" in result.stderr
    (first,) = _runs("retrain")
    assert first.data.tags["mlcycle.strategy"] == "scratch"
    assert {"after_current_test_r2", "after_reference_test_mae", "current_test_r2"} <= set(
        first.data.metrics
    )
    assert not [k for k in first.data.metrics if k.startswith("before_")]
    client = mlflow.MlflowClient()
    history = client.get_metric_history(first.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert len(client.get_metric_history(first.info.run_id, "val_loss")) == 2
    charts = {a.path for a in client.list_artifacts(first.info.run_id, "charts")}
    assert "charts/learning_curve.png" in charts
    assert _aliases("loan-amount") == {"challenger": "1"}

    # The network becomes champion (as monitor would promote it); retrain continues it.
    # In-process this time: a second `mlflow run` would only repeat ~60 s of imports.
    client.set_registered_model_alias("loan-amount", "champion", "1")
    _invoke(retrain_command, "--epochs", "2")
    assert "base model models:/loan-amount@champion (version 1)" in caplog.text
    second = _runs("retrain")[-1]
    assert second.data.tags["mlcycle.strategy"] == "finetune"
    assert {
        "before_current_test_r2",
        "before_reference_test_mae",
        "after_current_test_r2",
        "after_current_test_mae",
    } <= set(second.data.metrics)
    version = client.get_model_version("loan-amount", "2")
    assert version.tags["mlcycle.strategy"] == "finetune"
    assert version.tags["mlcycle.base_model_version"] == "1"
    assert _aliases("loan-amount") == {"champion": "1", "challenger": "2"}

    base, tuned = load_network("models:/loan-amount/1"), load_network("models:/loan-amount/2")
    assert tuned.preprocessing == base.preprocessing
    pairs = list(zip(base.network.get_weights(), tuned.network.get_weights(), strict=True))
    assert all(a.shape == b.shape for a, b in pairs)
    assert any(not np.array_equal(a, b) for a, b in pairs)

    model = mlflow.pyfunc.load_model("models:/loan-amount@challenger")
    predictions = model.predict(_raw_rows_with_holes())
    assert len(predictions) == 6 and np.isfinite(predictions).all()


def test_classification_network_over_a_forest_champion(tracking_uri, classification_csvs, caplog):
    caplog.set_level(logging.INFO)
    old, new = classification_csvs
    _invoke(
        etl_command,
        "--reference",
        old,
        "--current",
        new,
        "--target",
        "churn",
        "--drop-columns",
        "customer_id",
    )
    _invoke(baseline_command, "--model-name", "churn", "--n-estimators", "10")
    # A stand-in for an optimize run of family nn (its step is not ours to run here).
    with mlflow.start_run() as tuning:
        mlflow.set_tag(config.STEP_TAG, "optimize")
        mlflow.log_dict(
            {
                "family": "nn",
                "hidden_units": [16],
                "dropout": 0.1,
                "learning_rate": 0.005,
                "epochs": 999,
            },
            "best_params.json",
        )

    _invoke(
        retrain_command,
        "--model-name",
        "churn",
        "--epochs",
        "2",
        "--params-from",
        tuning.info.run_id,
    )
    assert "fine-tuning is impossible" in caplog.text
    run = _runs("retrain")[-1]
    assert run.data.tags["mlcycle.strategy"] == "scratch"
    assert run.data.params["network.hidden_units"] == "[16]"
    assert run.data.params["network.epochs"] == "2"
    assert {
        "before_current_test_f1",
        "after_current_test_f1",
        "after_current_test_roc_auc",
        "before_reference_test_accuracy",
    } <= set(run.data.metrics)
    assert _aliases("churn") == {"champion": "1", "challenger": "2"}

    model = mlflow.pyfunc.load_model("models:/churn@challenger")
    rows = pd.read_csv(new).drop(columns=["churn", "customer_id"]).head(30)
    assert rows.isna().any().any()
    assert set(model.predict(rows)) <= {"yes", "no"}
    proba = model.predict(rows, params={"predict_method": "predict_proba"})
    assert list(proba.columns) == ["no", "yes"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


@pytest.fixture
def store_with_aliases(tracking_uri):
    """An etl run and a forest that is both champion and challenger."""
    _invoke(etl_command)
    _invoke(baseline_command, "--n-estimators", "5")
    mlflow.MlflowClient().set_registered_model_alias("loan-amount", "challenger", "1")
    return tracking_uri


def test_bad_parameters_get_one_message_and_leave_the_aliases(store_with_aliases):
    with mlflow.start_run() as forest_run:  # a run that is not an optimize run
        mlflow.set_tag(config.STEP_TAG, "baseline")
    with mlflow.start_run() as rf_tuning:
        mlflow.log_dict({"family": "rf", "n_estimators": 50}, "best_params.json")
    # A model of another dataset: it cannot even be scored on these rows.
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            DummyRegressor().fit(pd.DataFrame({"z": [1.0, 2.0]}), [1.0, 2.0]),
            name="model",
            registered_model_name="other-data",
            input_example=pd.DataFrame({"z": [1.0, 2.0]}),
        )
    cases = [
        (
            ["--base-model", "models:/other-data/1"],
            "base model models:/other-data/1 cannot score the rows of etl run",
        ),
        (["--epochs", "0"], "parameter epochs must be >= 1, got 0"),
        (["--batch-size", "0"], "parameter batch_size must be >= 1, got 0"),
        (["--learning-rate", "-1"], "parameter learning_rate must be > 0"),
        (["--strategy", "warm"], "parameter strategy must be one of finetune, scratch, got 'warm'"),
        (["--window", "last"], "parameter window must be one of current, all, got 'last'"),
        (
            ["--base-model", "models:/loan-amount/42"],
            "model models:/loan-amount/42 does not exist in the registry",
        ),
        (
            ["--base-model", "models:/nope@champion"],
            "model models:/nope@champion does not exist in the registry",
        ),
        (
            ["--base-model", "runs:/0123456789abcdef/model"],
            "model runs:/0123456789abcdef/model cannot be loaded",
        ),
        (
            ["--params-from", "0123456789abcdef"],
            "parameter params_from: no run with id '0123456789abcdef'",
        ),
        (["--params-from", forest_run.info.run_id], "has no best_params.json"),
        (["--params-from", rf_tuning.info.run_id], "tuned family 'rf', not a network"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(
            retrain_command, [*args, "--epochs", "1"] if args[0] != "--epochs" else args
        )
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert result.stderr.startswith("mlcycle error: "), (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert _aliases("loan-amount") == {"champion": "1", "challenger": "1"}
    assert len(mlflow.MlflowClient().search_model_versions("name='loan-amount'")) == 1
    assert all(r.info.status == "FAILED" for r in _runs("retrain"))


def test_best_params_file_is_what_optimize_writes():
    """The contract with optimize: keys of NetworkParams plus the family."""
    from mlcycle.network import NetworkParams

    written = json.loads(json.dumps({"family": "nn", **NetworkParams().to_dict()}))
    assert NetworkParams.from_dict(written) == NetworkParams()
