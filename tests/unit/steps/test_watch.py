"""The watch step's pure parts: runs (as plain dicts) to the evidence the policy reads."""

import dataclasses

import mlflow
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.lifecycle.trigger import assemble
from mlcycle.steps.watch import WatchParams, with_prediction_id


def _run(run_id, start, score_run="", version="", **metrics):
    tags = {"mlcycle.model_version": version, "mlcycle.champion_version": version}
    return {
        "run_id": run_id,
        "start": start,
        "score_run": score_run,
        "tags": tags,
        "metrics": metrics,
    }


def _evidence(**changes):
    given = dict(
        metric="r2",
        champion="2",
        baseline=0.93,
        baseline_source="test",
        champion_since=100,
        last_retrain=100,
        score_runs=[_run("s1", 50), _run("s2", 150), _run("s3", 250)],
        feedback_batches=[
            _run("f1", 60, "s1", "1", realised_r2=0.2),
            _run("f2", 300, "s3", "2", realised_r2=0.5),
            _run("f3", 310, "s2", "2", realised_r2=0.9),
        ],
        monitor_runs=[],
    )
    return assemble(**{**given, **changes})


def test_only_the_champion_s_windows_count_ordered_by_when_the_batch_was_scored():
    windows = _evidence()["windows"]
    assert [(w["score_run"], w["realised"]) for w in windows] == [("s2", 0.9), ("s3", 0.5)]


def test_a_batch_labelled_twice_counts_once_with_its_newest_feedback():
    again = _run("f4", 400, "s3", "2", realised_r2=0.6)
    evidence = _evidence(feedback_batches=[_run("f2", 300, "s3", "2", realised_r2=0.5), again])
    assert [w["realised"] for w in evidence["windows"]] == [0.6]


def test_age_and_batches_since_the_last_retrain_count_scored_batches():
    evidence = _evidence(last_retrain=200)
    assert evidence["age_batches"] == 2
    assert evidence["batches_since_retrain"] == 1
    assert _evidence(last_retrain=None)["batches_since_retrain"] is None


def test_a_batch_whose_score_run_is_not_in_the_store_is_dated_by_what_refers_to_it():
    evidence = _evidence(score_runs=[], last_retrain=305)
    # s1 at 60, s3 at 300, s2 at 310: only s2 is after the last retrain.
    assert evidence["batches_since_retrain"] == 1


def test_the_newest_label_free_run_gives_the_drift_share_and_the_estimate():
    monitors = [
        _run("m1", 120, "s2", "2", estimated_r2=0.9, estimated_r2_high=0.95, drift_share=0.1),
        _run("m2", 260, "s3", "2", estimated_r2=0.6, estimated_r2_high=0.7, drift_share=0.7),
        _run("m0", 60, "s1", "1", estimated_r2=0.1, estimated_r2_high=0.2, drift_share=0.9),
    ]
    evidence = _evidence(monitor_runs=monitors)
    assert evidence["drift_share"] == 0.7
    assert [e["high"] for e in evidence["estimates"]] == [0.95, 0.7]


def test_k_above_n_is_one_line_naming_both():
    with pytest.raises(MlcycleError, match=r"parameter k \(4\) must not exceed n \(3\)"):
        dataclasses.replace(WatchParams(), k=4, n=3).validate()


def test_a_drift_share_above_one_is_refused_as_it_could_never_be_exceeded():
    # 50 (meant as percent) switched the drift rule off without a word.
    with pytest.raises(MlcycleError, match=r"parameter max_drift_share .* between 0 and 1"):
        dataclasses.replace(WatchParams(), max_drift_share=50.0).validate()
    dataclasses.replace(WatchParams(), max_drift_share=1.0).validate()


def test_a_reference_file_that_does_not_exist_is_refused_before_the_run(tmp_path):
    # It was found only the day watch triggered, weeks after the schedule was set up.
    missing = tmp_path / "gone.csv"
    with pytest.raises(MlcycleError, match=r"parameter reference: data file not found: .*gone"):
        dataclasses.replace(WatchParams(), reference=str(missing)).validate()
    (tmp_path / "there.csv").write_text("a,b\n1,2\n")
    dataclasses.replace(WatchParams(), reference=str(tmp_path / "there.csv")).validate()


def test_main_drops_the_prediction_id_of_the_labelled_rows_once():
    assert with_prediction_id("nom,prenom") == "nom,prenom,prediction_id"
    assert with_prediction_id("nom, prediction_id") == "nom,prediction_id"
    assert with_prediction_id("") == "prediction_id"


@pytest.mark.integration
def test_watching_a_model_that_is_not_registered_is_one_line_and_exit_2(tracking_uri):
    # It recorded "no retrain ... the champion scored 0 batches" and exited 0, and under
    # policy always claimed "a batch was scored since the last retrain": a mistyped name
    # in a cron line watched nothing, silently, forever.
    from click.testing import CliRunner

    from entrypoints.watch import main as watch_command

    mlflow.MlflowClient().create_registered_model("loan-amount")
    for policy in ("auto", "always"):
        result = CliRunner().invoke(
            watch_command, ["--model-name", "loan-amout", "--policy", policy]
        )
        assert result.exit_code == 2, result.output
        assert "mlcycle error: model 'loan-amout' is not registered" in result.output
        assert "loan-amount" in result.output.splitlines()[-1]


@pytest.mark.integration
def test_a_champion_s_training_data_that_is_gone_names_the_etl_run_and_the_parameter(
    tracking_uri, tmp_path
):
    # It said "parameter reference: data file not found" to a user who passed no
    # reference: the file was the champion's etl current, moved away since.
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    from mlcycle.steps.watch import main_parameters

    with mlflow.start_run() as etl:
        mlflow.log_params({"current": str(tmp_path / "gone.csv"), "target": "y"})
    version = ModelVersion(
        "m", "1", 0, run_id="r", tags=[ModelVersionTag("mlcycle.etl_run", etl.info.run_id)]
    )
    with pytest.raises(MlcycleError) as caught:
        main_parameters(WatchParams(model_name="m"), version, tmp_path / "labels.csv")
    message = str(caught.value)
    assert "gone.csv" in message and etl.info.run_id in message
    assert "pass reference" in message and not message.startswith("parameter reference:")
