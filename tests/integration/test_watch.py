"""watch, a real process each (`python -m entrypoints.watch`, then the real `mlflow run -e
watch`), on a store holding a champion and the feedback runs the production loop's
contract describes (logged here with real MLflow calls): `never` records a no with its
evidence, the default policy sees the decay, tells a loopback server, and runs main on
the labelled rows of the batches since the champion last held."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner

from entrypoints.baseline import main as baseline_command
from entrypoints.etl import main as etl_command
from mlcycle import config
from tests.alert_receiver import Receiver, closed_port_url
from tests.conftest import ROOT, assert_ok, flags, mlflow_run, run_step

pytestmark = pytest.mark.integration

NAME = "watched"


@pytest.fixture(scope="module")
def loop(module_tracking_uri, tmp_path_factory):
    """A champion (etl + baseline on small slices of the bundled data), then one feedback
    run with two labelled windows: the first as good as the baseline, the second far
    below it (a relationship change), and its joined labelled rows as a file."""
    folder = tmp_path_factory.mktemp("loop")
    old = pd.read_csv(ROOT / "data" / "df_old.csv")
    new = pd.read_csv(ROOT / "data" / "df_new.csv")
    old.head(400).to_csv(folder / "old.csv", index=False)
    new.head(400).to_csv(folder / "new.csv", index=False)
    # Two scored batches of 150 rows, their prediction ids `<score run>-<row>` as score
    # writes them.
    batches = {"batch-1": "1" * 32, "batch-2": "2" * 32}
    ids = [f"{batches[b]}-{i}" for b in batches for i in range(150)]
    labelled = new.iloc[400:700].assign(prediction_id=ids)
    labelled.to_csv(folder / "feedback.csv", index=False)
    # The real etl and baseline commands, in this process: what is tested is watch's
    # process, not theirs.
    for command, args in (
        (
            etl_command,
            ["--reference", str(folder / "old.csv"), "--current", str(folder / "new.csv")],
        ),
        (baseline_command, ["--model-name", NAME, "--n-estimators", "20"]),
    ):
        done = CliRunner().invoke(command, args)
        assert done.exit_code == 0, (done.output, done.exception)
    champion = mlflow.MlflowClient().get_model_version_by_alias(NAME, config.CHAMPION)
    baseline = mlflow.get_run(champion.run_id).data.metrics["current_test_r2"]
    with mlflow.start_run(run_name="feedback"):
        mlflow.set_tags(
            {
                "mlcycle.step": "feedback",
                "mlcycle.model_name": NAME,
                "mlcycle.feedback.output": str(folder / "feedback.csv"),
            }
        )
        for batch, realised in (("batch-1", baseline - 0.01), ("batch-2", baseline - 0.4)):
            with mlflow.start_run(run_name=batch, nested=True):
                mlflow.set_tags(
                    {
                        "mlcycle.step": "feedback_batch",
                        "mlcycle.score_run": batches[batch],
                        "mlcycle.model_name": NAME,
                        "mlcycle.model_version": champion.version,
                    }
                )
                mlflow.log_metrics(
                    {
                        "realised_r2": realised,
                        "label_coverage": 1.0,
                        "labelled_rows": 150.0,
                        "label_lag_seconds": 3600.0,
                    }
                )
    return {
        "folder": folder,
        "baseline": baseline,
        "champion": champion.version,
        "batches": batches,
        "labelled": labelled,
    }


def _watch_runs(decision: str) -> list:
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=(
            f"tags.`mlcycle.step` = 'watch' and tags.`mlcycle.watch.trigger` = '{decision}'"
        ),
        output_format="list",
    )


def _evidence(run) -> dict:
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="watch")
    return json.loads((Path(path) / "evidence.json").read_text())


def test_never_records_a_no_with_its_evidence_and_tells_of_the_decay(loop, module_tracking_uri):
    with Receiver() as server:
        result = run_step(
            "watch",
            module_tracking_uri,
            *flags({"model_name": NAME, "policy": "never", "alert_url": server.url}),
        )
    assert_ok(result)
    (run,) = _watch_runs("false")
    assert run.data.tags["mlcycle.watch.reason"] == "policy never (rules fired: realised_decay)"
    assert run.data.tags["mlcycle.watch.rules_fired"] == "realised_decay"
    assert run.data.metrics["watch_trigger"] == 0.0
    evidence = _evidence(run)
    assert evidence["policy"] == "never" and evidence["trigger"] is False
    assert [w["score_run"] for w in evidence["evidence"]["windows"]] == list(
        loop["batches"].values()
    )
    assert evidence["evidence"]["baseline"] == pytest.approx(loop["baseline"])
    assert (
        "run_id" in evidence["evidence"]["baseline_source"]
        or "current_test_r2" in (evidence["evidence"]["baseline_source"])
    )
    assert "mlcycle.run.main" not in run.data.tags
    assert [r["body"]["event"] for r in server.received] == ["decay"]
    assert server.received[0]["body"]["run_id"] == run.info.run_id


def test_decay_in_the_feedback_triggers_and_runs_main_on_the_labelled_rows(
    loop, module_tracking_uri
):
    # The endpoint is down: the step neither fails nor waits for it.
    result = mlflow_run(
        "watch",
        module_tracking_uri,
        {
            "model_name": NAME,
            "n_trials": 0,
            "epochs": 2,
            "alert_url": closed_port_url(),
        },
        timeout=1500,
    )
    assert_ok(result)
    assert "alert trigger for watched NOT delivered" in result.stderr
    (run,) = _watch_runs("true")
    assert run.data.tags["mlcycle.watch.rules_fired"] == "realised_decay"
    assert "1 of the last 2 labelled windows" in run.data.tags["mlcycle.watch.reason"]
    main = mlflow.get_run(run.data.tags["mlcycle.run.main"])
    assert main.info.status == "FINISHED"
    assert main.data.tags["mlflow.parentRunId"] == run.info.run_id
    # current: the present, the rows of the batch since which the champion no longer
    # holds (batch-2); batch-1 still followed what the champion learned.
    assert (
        run.data.tags["mlcycle.watch.labels"] == "150 rows of the 1 decayed batch(es) since it held"
    )
    current = pd.read_csv(main.data.params["current"])
    expected = loop["labelled"].iloc[150:]
    assert current["prediction_id"].tolist() == expected["prediction_id"].tolist()
    pd.testing.assert_frame_equal(current, expected.reset_index(drop=True), check_dtype=False)
    # reference: what the champion learned on (its etl run's current file)
    assert main.data.params["reference"] == str(loop["folder"] / "new.csv")
    assert main.data.params["model_name"] == NAME
    assert main.data.params["drop_columns"] == "nom,prenom,prediction_id"
    monitor = mlflow.get_run(main.data.tags["mlcycle.run.monitor"])
    assert monitor.info.status == "FINISHED"
