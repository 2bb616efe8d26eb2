"""What the store knows about a model's loop: labels of several feedback files merged,
and (on a real store) which main runs count as a retrain."""

import mlflow
import pandas as pd
import pytest

from mlcycle.lifecycle.evidence import last_retrain, merged_labels


def test_labels_merged_from_several_files_keep_the_newest_label_of_a_prediction():
    old = pd.DataFrame({"prediction_id": ["a", "b"], "y": [1.0, 2.0]})
    new = pd.DataFrame({"prediction_id": ["b", "c"], "y": [3.0, 4.0]})
    merged = merged_labels([old, new])
    assert merged.set_index("prediction_id")["y"].to_dict() == {"a": 1.0, "b": 3.0, "c": 4.0}


@pytest.mark.integration
def test_a_main_run_that_failed_or_was_killed_is_no_retrain_but_a_finished_one_is(tracking_uri):
    # A failed main counted as the last retrain: every labelled window before it stopped
    # counting and the cooldown restarted, so watch said "no window labelled since the
    # last retrain" about labels no model ever learned from.
    def main_run(status):
        with mlflow.start_run() as run:
            mlflow.set_tag("mlcycle.step", "main")
            mlflow.log_param("model_name", "m")
        mlflow.tracking.MlflowClient().set_terminated(run.info.run_id, status)
        return mlflow.get_run(run.info.run_id).info.start_time

    main_run("FAILED")
    main_run("KILLED")
    assert last_retrain("m", since=5) == 5
    finished = main_run("FINISHED")
    main_run("FAILED")
    assert last_retrain("m", since=5) == finished
