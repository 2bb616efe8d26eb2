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

from entrypoints.baseline import main as baseline_command
from entrypoints.etl import main as etl_command
from entrypoints.retrain import main as retrain_command
from mlcycle import config
from mlcycle.ingest.data import Schema
from mlcycle.ingest.datasets import load_splits
from mlcycle.models.families import rf
from mlcycle.models.modelio import SKOPS_TRUSTED_TYPES
from mlcycle.models.network import load_network
from mlcycle.models.served_forest import log_forest
from tests.conftest import ROOT, assert_ok, make_classification_csv, mlflow_run

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


def _stand_in_optimize_run(best: dict) -> str:
    """A run holding what an optimize run of family nn leaves for retrain (the real step
    feeding retrain is tested in test_optimize.py)."""
    with mlflow.start_run() as tuning:
        mlflow.set_tag(config.STEP_TAG, "optimize")
        mlflow.log_dict({"family": "nn", **best}, "best_params.json")
    return tuning.info.run_id


def _candidates(run) -> dict:
    """The candidate runs nested under a retrain run, by name."""
    nested = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
        output_format="list",
    )
    return {c.data.tags["mlcycle.candidate"]: c for c in nested}


def _picked_by_validation(run, tried: dict, metric: str) -> str:
    """The run's choice, checked against its candidates' validation scores: the best one,
    or one that learns from more rows and that the slice could not tell from the best."""
    from mlcycle.models.candidates import PREFERENCE

    scores = {name: c.data.metrics[f"validation_{metric}"] for name, c in tried.items()}
    best = max(scores, key=scores.get)
    choice = run.data.tags["mlcycle.auto.choice"]
    reason = run.data.tags["mlcycle.auto.reason"]
    if choice == best:
        assert reason.startswith(f"{choice} has the best validation {metric} on "), reason
    else:
        assert PREFERENCE.index(choice) < PREFERENCE.index(best)
        assert reason.startswith(
            f"{choice} learns from more rows than {best} and the validation slice cannot "
            f"tell them apart: {metric} {scores[choice]:.4f} against {scores[best]:.4f} on "
        ), reason
    assert {n: c.data.tags["mlcycle.auto.chosen"] for n, c in tried.items()} == {
        n: str(n == choice).lower() for n in tried
    }
    if run.data.params["members"] == "1":
        assert run.data.metrics[f"validation_{metric}"] == scores[choice]
    # else the run's score is the bag's, the chosen candidate trained from more seeds
    # (checked against the slice predictions it logged where the defaults are tested).
    return choice


def _network_params(run) -> dict[str, str]:
    return {k.removeprefix("network."): v for k, v in run.data.params.items() if "network." in k}


def test_fresh_store_trains_from_scratch_then_continues_or_replaces_a_network_champion(
    tracking_uri, caplog
):
    caplog.set_level(logging.INFO)
    result = mlflow_run(
        "retrain", tracking_uri, {"epochs": 2, "strategy": "scratch", "window": "current"}
    )
    assert_ok(result)
    assert "running etl on the defaults first" in result.stderr
    assert "no champion yet: training from scratch" in result.stderr
    (first,) = _runs("retrain")
    assert first.data.tags["mlcycle.strategy"] == "scratch"
    assert {"after_current_test_r2", "after_reference_test_mae", "current_test_r2"} <= set(
        first.data.metrics
    )
    assert not [k for k in first.data.metrics if k.startswith("before_")]
    _, splits = load_splits(first.data.tags["mlcycle.etl_run"])
    assert first.data.metrics["train_rows"] == len(splits.current_train)  # window=current
    client = mlflow.MlflowClient()
    history = client.get_metric_history(first.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert len(client.get_metric_history(first.info.run_id, "val_loss")) == 2
    charts = {a.path for a in client.list_artifacts(first.info.run_id, "charts")}
    assert "charts/learning_curve.png" in charts
    assert _aliases("loan-amount") == {"challenger": "1"}

    # The network becomes champion (as monitor would promote it); retrain continues it.
    # In-process this time: a second `mlflow run` would only repeat ~60 s of imports.
    # Tuned parameters ask for another architecture: fine-tuning cannot honour it, and
    # the logged params must say what was trained, not what was asked for.
    client.set_registered_model_alias("loan-amount", "champion", "1")
    tuning_run = _stand_in_optimize_run(
        {"hidden_units": [16], "dropout": 0.1, "learning_rate": 0.005}
    )
    _invoke(
        retrain_command,
        *("--epochs", "2", "--params-from", tuning_run, "--strategy", "finetune"),
        *("--window", "current"),
    )
    assert "base model models:/loan-amount@champion (version 1)" in caplog.text
    assert "replaces the one asked for (hidden_units [16], dropout 0.1)" in caplog.text
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
    logged = _network_params(second)
    assert (logged["hidden_units"], logged["dropout"]) == ("[64, 32]", "0.0")
    assert logged["learning_rate"] == "0.005"  # not architecture: the tuned value holds
    assert logged == {k: str(v) for k, v in tuned.params.to_dict().items()}

    model = mlflow.pyfunc.load_model("models:/loan-amount@challenger")
    predictions = model.predict(_raw_rows_with_holes())
    assert len(predictions) == 6 and np.isfinite(predictions).all()

    # strategy=scratch over the same network champion, on reference + current train,
    # without early stopping: a fresh network (its preprocessing fitted on all those
    # rows), still measured against the champion, every epoch run, the last one kept.
    _invoke(
        retrain_command,
        "--strategy",
        "scratch",
        "--window",
        "all",
        "--patience",
        "0",
        "--epochs",
        "3",
    )
    third = _runs("retrain")[-1]
    assert third.data.tags["mlcycle.strategy"] == "scratch"
    assert third.data.tags["mlcycle.window"] == "all"
    assert third.data.metrics["train_rows"] == len(splits.reference_train) + len(
        splits.current_train
    )
    assert {"before_current_test_r2", "after_current_test_r2"} <= set(third.data.metrics)
    assert third.data.metrics["before_current_test_r2"] == pytest.approx(
        first.data.metrics["current_test_r2"]
    )  # the champion is version 1, scored on the same rows
    assert _network_params(third)["patience"] == "0"
    assert third.data.metrics["epochs_trained"] == third.data.metrics["kept_epoch"] == 3
    assert len(client.get_metric_history(third.info.run_id, "val_loss")) == 3
    version = client.get_model_version("loan-amount", "3")
    assert version.tags["mlcycle.strategy"] == "scratch"
    assert version.tags["mlcycle.base_model_version"] == "1"
    fresh = load_network("models:/loan-amount/3")
    assert fresh.preprocessing.means != base.preprocessing.means  # fitted on other rows
    assert _aliases("loan-amount") == {"champion": "1", "challenger": "3"}


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
    tuning = _stand_in_optimize_run(
        {"hidden_units": [16], "dropout": 0.1, "learning_rate": 0.005, "epochs": 999}
    )
    # Defaults: strategy and window auto, over a forest: no finetune candidate.
    _invoke(retrain_command, "--model-name", "churn", "--epochs", "2", "--params-from", tuning)
    assert "no finetune candidate: the base model models:/churn@champion" in caplog.text
    assert "fine-tuning is impossible" in caplog.text
    run = _runs("retrain")[-1]
    tried = _candidates(run)
    assert sorted(tried) == ["scratch/all", "scratch/current", "transfer/current"]
    assert all("validation_f1" in c.data.metrics for c in tried.values())
    choice = _picked_by_validation(run, tried, "f1")
    assert run.data.tags["mlcycle.strategy"] + "/" + run.data.tags["mlcycle.window"] == choice
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


def test_defaults_over_a_forest_champion_try_each_candidate_in_a_nested_run_and_keep_the_best(
    tracking_uri, caplog
):
    caplog.set_level(logging.INFO)
    _invoke(etl_command)
    _invoke(baseline_command, "--n-estimators", "5")  # the forest champion, version 1
    _invoke(retrain_command, "--epochs", "3")
    (run,) = _runs("retrain")
    assert (run.data.params["strategy"], run.data.params["window"]) == ("auto", "auto")
    assert "no finetune candidate: the base model models:/loan-amount@champion" in caplog.text
    schema, splits = load_splits(run.data.tags["mlcycle.etl_run"])
    current, everything = (
        len(splits.current_train),
        len(splits.current_train) + len(splits.reference_train),
    )

    tried = _candidates(run)
    assert sorted(tried) == ["scratch/all", "scratch/current", "transfer/current"]
    client = mlflow.MlflowClient()
    for name, candidate in tried.items():
        assert candidate.info.status == "FINISHED"
        assert candidate.data.tags[config.STEP_TAG] == "retrain-candidate"
        strategy, window = name.split("/")
        assert (candidate.data.tags["mlcycle.strategy"], candidate.data.tags["mlcycle.window"]) == (
            strategy,
            window,
        )
        m = candidate.data.metrics
        assert {"validation_r2", "validation_mae", "epochs_trained", "kept_epoch"} <= set(m)
        assert m["validation_rows"] == round(0.15 * current)  # a slice of current train
        assert m["train_rows"] == (current if window == "current" else everything)
        assert candidate.data.params["network.epochs"] == "3"
        assert len(client.get_metric_history(candidate.info.run_id, "val_loss")) >= 1
    assert tried["transfer/current"].data.metrics["pretrain_rows"] == len(splits.reference_train)

    # Chosen by validation; the run, its tags and the registered version say so.
    choice = _picked_by_validation(run, tried, "r2")
    assert f" on {round(0.15 * current)} current train rows" in run.data.tags["mlcycle.auto.reason"]
    scores = {name: c.data.metrics["validation_r2"] for name, c in tried.items()}
    strategy, window = choice.split("/")
    assert (run.data.tags["mlcycle.strategy"], run.data.tags["mlcycle.window"]) == (
        strategy,
        window,
    )
    assert run.data.metrics["train_rows"] == tried[choice].data.metrics["train_rows"]
    assert {"before_current_test_r2", "after_current_test_r2"} <= set(run.data.metrics)
    version = client.get_model_version("loan-amount", "2")
    assert (version.tags["mlcycle.strategy"], version.tags["mlcycle.window"]) == (
        strategy,
        window,
    )
    assert _aliases("loan-amount") == {"champion": "1", "challenger": "2"}

    # The candidates were compared one network each; the kept one is then judged as the
    # bag of 5 it is registered as (members' default), networks that never saw the slice:
    # the slice predictions main's blend weighs give the run's validation score. The
    # registered bag is that candidate fitted again on the rows it is registered with
    # (its early stopping watched the slice), so its own score there is not the judged one.
    from sklearn.metrics import r2_score

    from mlcycle.models.blending import read_slice_predictions
    from mlcycle.models.candidates import validation_metrics, validation_slice
    from mlcycle.models.network import NetworkParams

    assert run.data.params["members"] == "5"
    logged = read_slice_predictions(run.info.run_id)
    _, judged = validation_slice(splits.current_train, NetworkParams())
    assert logged["truth"].tolist() == judged[schema.target].tolist()
    bagged = run.data.metrics["validation_r2"]
    assert r2_score(logged["truth"], logged["prediction"]) == pytest.approx(bagged, abs=1e-6)
    assert bagged != pytest.approx(scores[choice], abs=1e-9)
    registered = load_network("models:/loan-amount/2")
    assert registered.members == 5
    refitted = validation_metrics(registered, schema, judged)["validation_r2"]
    assert refitted != pytest.approx(bagged, abs=1e-9)


@pytest.fixture
def store_with_aliases(tracking_uri):
    """An etl run and a forest that is both champion and challenger."""
    _invoke(etl_command)
    _invoke(baseline_command, "--n-estimators", "5")
    mlflow.MlflowClient().set_registered_model_alias("loan-amount", "challenger", "1")
    return tracking_uri


def _register_forest(name, schema, frame, signed=True):
    """A real mlcycle forest of other data, registered in the store under test."""
    pipeline = rf.fit(schema, rf.ForestParams(n_estimators=5), frame)
    with mlflow.start_run():
        if signed:  # as baseline logs it: the served forest, which carries its schema
            return log_forest(pipeline, schema, frame, name)
        # As a hand-made model may come: no signature, nothing says what it reads.
        return mlflow.sklearn.log_model(
            pipeline,
            name="model",
            registered_model_name=name,
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )


def _models_of_other_data(tmp_path) -> str:
    """Register models:/churn/1 (another dataset: other columns, a classifier),
    models:/loan-class/1 (the loan columns, but a classifier) and models:/tenure/1 (a
    regressor of other columns with no signature). Returns the etl run they are foreign to."""
    churn = pd.read_csv(make_classification_csv(tmp_path / "churn.csv", rows=80))
    churn_schema = Schema(
        "churn",
        "classification",
        ["tenure", "spend", "support_calls"],
        ["plan"],
        classes=["no", "yes"],
    )
    _register_forest("churn", churn_schema, churn)
    tenure_schema = Schema("tenure", "regression", ["spend", "support_calls"], ["plan"])
    _register_forest("tenure", tenure_schema, churn, signed=False)
    etl_run = _runs("etl")[-1].info.run_id
    schema, splits = load_splits(etl_run)
    loans = splits.reference_train.assign(
        big=lambda f: np.where(f[schema.target] > f[schema.target].median(), "yes", "no")
    )
    loan_class = Schema(
        "big", "classification", schema.numeric, schema.categorical, classes=["no", "yes"]
    )
    _register_forest("loan-class", loan_class, loans)
    return etl_run


def test_bad_parameters_get_one_message_and_leave_the_aliases(store_with_aliases, tmp_path):
    with mlflow.start_run() as forest_run:  # a run that is not an optimize run
        mlflow.set_tag(config.STEP_TAG, "baseline")
    with mlflow.start_run() as rf_tuning:
        mlflow.log_dict({"family": "rf", "n_estimators": 50}, "best_params.json")
    etl_run = _models_of_other_data(tmp_path)
    foreign = f"does not model the data of etl run {etl_run}: "
    refused = "; it can be neither fine-tuned nor compared with: pass a base_model of this data"
    cases = [
        # A base model of another dataset cannot be continued (finetune is the default)
        # nor measured on these rows: refused before any training, naming what differs.
        (
            ["--base-model", "models:/churn/1"],
            f"base model models:/churn/1 {foreign}it is a classification model and the data "
            "is regression; it predicts 'churn', not the data's target 'montant_pret'; it "
            "reads columns the data lacks (plan, spend, support_calls, "
            f"tenure){refused}, or strategy=scratch to train without before_ metrics",
        ),
        (
            ["--base-model", "models:/loan-class/1"],
            f"base model models:/loan-class/1 {foreign}it is a classification model and the "
            f"data is regression; it predicts 'big', not the data's target 'montant_pret'{refused}",
        ),
        (
            # Nothing says what it reads: scoring it is what fails, still one line.
            ["--base-model", "models:/tenure/1"],
            f"base model models:/tenure/1 cannot score the rows of etl run {etl_run}: ",
        ),
        (["--epochs", "0"], "parameter epochs must be >= 1, got 0"),
        (["--batch-size", "0"], "parameter batch_size must be >= 1, got 0"),
        (["--learning-rate", "-1"], "parameter learning_rate must be > 0"),
        (
            ["--strategy", "warm"],
            "parameter strategy must be one of auto, finetune, transfer, scratch, got 'warm'",
        ),
        (["--window", "last"], "parameter window must be one of auto, current, all, got 'last'"),
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
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, args
        assert message in result.stderr, (args, result.stderr)
    assert _aliases("loan-amount") == {"champion": "1", "challenger": "1"}
    assert len(mlflow.MlflowClient().search_model_versions("name='loan-amount'")) == 1
    assert all(r.info.status == "FAILED" for r in _runs("retrain"))

    # strategy=scratch does not continue the base, which was only the yardstick: the
    # network trains, with no before_ metrics and the reason on the run.
    _invoke(
        retrain_command, "--base-model", "models:/churn/1", "--strategy", "scratch", "--epochs", "1"
    )
    run = _runs("retrain")[-1]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlcycle.before_skipped"].startswith(
        f"base model models:/churn/1 {foreign}it is a classification model"
    )
    assert not [k for k in run.data.metrics if k.startswith("before_")]
    assert "after_current_test_r2" in run.data.metrics
    version = mlflow.MlflowClient().get_model_version("loan-amount", "2")
    assert version.tags["mlcycle.base_model"] == "models:/churn/1"
    assert _aliases("loan-amount") == {"champion": "1", "challenger": "2"}
    replaced = mlflow.MlflowClient().get_model_version("loan-amount", "1")
    assert replaced.tags["mlcycle.superseded_by"] == f"2 ({run.info.run_id})"


def test_best_params_file_is_what_optimize_writes():
    """The contract with optimize: keys of NetworkParams plus the family."""
    from mlcycle.models.network import NetworkParams

    written = json.loads(json.dumps({"family": "nn", **NetworkParams().to_dict()}))
    assert NetworkParams.from_dict(written) == NetworkParams()
