"""MLflow 3 lineage of the models baseline, optimize and retrain log, on the bundled data
(baseline and optimize through their click commands in-process, retrain as its own
process): every metric of a logged model names the dataset it was measured on (the
etl run's rows, by MLflow's own digest of them), the training rows are the run's training
input with the model, a search by dataset finds the models, the runs keep their metrics
as before, and optimize and retrain runs hold system metrics that stay off the model."""

import mlflow
import pytest
from click.testing import CliRunner

from entrypoints.baseline import main as baseline_command
from entrypoints.optimize import main as optimize_command
from mlcycle import config
from mlcycle.ingest.datasets import load_splits
from mlcycle.ingest.split import SPLIT_NAMES
from mlcycle.steps.etl import EtlParams, execute
from tests.conftest import assert_ok, run_step

pytestmark = pytest.mark.integration

# What each step's run holds besides its model's metrics.
RUN_ONLY = {
    "baseline": set(),
    # validation_*: the best parameters refitted without the judging slice, scored on it
    # (what main compares candidates on), a fit that is not the logged model.
    "optimize": {"trials_complete", "trials_pruned", "trials_failed", "study_trials"}
    | {f"validation_{m}" for m in ("mae", "mse", "r2", "rmse")},
    "retrain": {"train_loss", "val_loss"},
}
SYSTEM = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"}


def _invoke(command, *args):
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)


def _run(step):
    (run,) = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = '{step}'",
    )
    return mlflow.get_run(run.info.run_id)  # search_runs leaves the model inputs out


def _search(experiment_id, name, digest) -> set[str]:
    models = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        datasets=[{"dataset_name": name, "dataset_digest": digest}],
        output_format="list",
    )
    return {m.model_id for m in models}


def test_each_model_names_the_rows_of_every_metric_and_is_found_by_them(
    tracking_uri, tmp_path, monkeypatch
):
    # A sample a second (10 s by default), so that short steps hold some.
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    with mlflow.start_run(run_name="etl") as etl:
        mlflow.set_tag(config.STEP_TAG, "etl")
        execute(EtlParams())
    etl_run = etl.info.run_id
    _invoke(baseline_command, "--etl-run", etl_run, "--n-estimators", 10)
    _invoke(
        optimize_command,
        *("--etl-run", etl_run, "--family", "rf", "--n-trials", 2),
        *("--storage", tmp_path / "study.log"),
    )
    # The forest champion cannot be fine-tuned: scratch, measured before against it.
    assert_ok(run_step("retrain", tracking_uri, "--etl-run", etl_run, "--epochs", "2"))

    schema, splits = load_splits(etl_run)
    # MLflow's digest of the etl run's rows, computed here independently of the steps.
    digests = {
        name: mlflow.data.from_pandas(getattr(splits, name), targets=schema.target).digest
        for name in SPLIT_NAMES
    }
    assert len(set(digests.values())) == 4
    trained_on = {"baseline": "reference_train", "optimize": "current_train"}
    trained_on["retrain"] = "current_train"
    models = {}
    for step, training in trained_on.items():
        run = _run(step)
        (output,) = run.outputs.model_outputs
        model = mlflow.get_logged_model(output.model_id)
        models[step] = model.model_id
        assert model.source_run_id == run.info.run_id
        named = {(m.key, m.dataset_name, m.dataset_digest) for m in model.metrics}
        assert len(named) == len(model.metrics)  # each metric once, with one dataset
        for key, dataset, digest in named:
            expected = next((s for s in ("reference_test", "current_test") if s in key), training)
            assert (dataset, digest) == (expected, digests[expected]), key
        # The model carries exactly the run's metrics that are its own, same values.
        own = {m.key: m.value for m in model.metrics}
        run_metrics = run.data.metrics
        before = {k for k in run_metrics if k.startswith(("before_", "best_validation_"))}
        system = {k for k in run_metrics if k.startswith("system/")}
        assert set(own) == set(run_metrics) - RUN_ONLY[step] - before - system
        assert all(run_metrics[k] == v for k, v in own.items())
        assert own["train_rows"] == len(getattr(splits, training))
        assert {f"{s}_{m}" for s in ("reference_test", "current_test") for m in ("r2", "mae")} <= (
            set(own)
        )
        inputs = {
            (i.dataset.name, i.dataset.digest, tag.value)
            for i in run.inputs.dataset_inputs
            for tag in i.tags
            if tag.key == "mlflow.data.context"
        }
        assert inputs == {(training, digests[training], "training")}
        assert model.model_id in {m.model_id for m in run.inputs.model_inputs}

    client = mlflow.MlflowClient()
    for step in ("optimize", "retrain"):
        run = _run(step)
        assert set(run.data.metrics) >= SYSTEM, step
        samples = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
        assert min(m.step for m in samples) == 1  # step 0 would be copied onto the model
    assert not [k for k in _run("baseline").data.metrics if k.startswith("system/")]

    retrain = _run("retrain")
    assert {"before_current_test_r2", "after_current_test_r2"} <= set(retrain.data.metrics)
    assert _run("optimize").data.metrics["trials_complete"] == 2

    experiment = _run("baseline").info.experiment_id
    everyone = set(models.values())
    assert _search(experiment, "current_test", digests["current_test"]) == everyone
    assert _search(experiment, "reference_test", digests["reference_test"]) == everyone
    assert _search(experiment, "reference_train", digests["reference_train"]) == {
        models["baseline"]
    }
    assert _search(experiment, "current_train", digests["current_train"]) == {
        models["optimize"],
        models["retrain"],
    }
    # Same name, other rows: nothing.
    assert _search(experiment, "current_test", digests["reference_test"]) == set()
    # The registry's versions lead to the same logged models.
    version = mlflow.MlflowClient().get_model_version("loan-amount", "1")
    assert (
        mlflow.pyfunc.load_model(f"models:/{models['baseline']}").metadata.model_id
        == (models["baseline"])
    )
    assert version.source == f"models:/{models['baseline']}"
