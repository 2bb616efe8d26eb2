import mlflow
import pandas as pd
import pytest

from mlcycle.lifecycle.lineage import by_dataset, split_of


@pytest.mark.parametrize(
    "metric, split",
    [
        ("current_test_r2", "current_test"),
        ("reference_test_mae", "reference_test"),
        ("after_current_test_f1", "current_test"),
        ("before_reference_test_roc_auc", "reference_test"),
        ("train_rows", None),
        ("epochs_trained", None),
        ("current_train_rows", None),
    ],
)
def test_a_metric_is_measured_on_the_test_split_its_name_says(metric, split):
    assert split_of(metric) == split


def _dataset(name, values):
    return mlflow.data.from_pandas(pd.DataFrame({"x": values}), name=name)


def test_metrics_are_grouped_by_their_dataset_and_the_rest_go_to_the_training_rows():
    tests = {
        "reference_test": _dataset("reference_test", [1.0]),
        "current_test": _dataset("current_test", [2.0]),
    }
    training = _dataset("current_train", [3.0, 4.0])
    groups = by_dataset(
        {
            "current_test_r2": 0.5,
            "after_current_test_r2": 0.5,
            "reference_test_r2": 0.9,
            "train_rows": 2,
        },
        tests,
        training,
    )
    assert {d.name: (d.digest, g) for d, g in groups} == {
        "current_test": (
            tests["current_test"].digest,
            {"current_test_r2": 0.5, "after_current_test_r2": 0.5},
        ),
        "reference_test": (tests["reference_test"].digest, {"reference_test_r2": 0.9}),
        "current_train": (training.digest, {"train_rows": 2.0}),
    }


def test_a_metric_of_no_dataset_is_refused_before_anything_is_logged():
    tests = {
        "reference_test": _dataset("reference_test", [1.0]),
        "current_test": _dataset("current_test", [2.0]),
    }
    with pytest.raises(ValueError, match="trials_complete"):
        by_dataset({"current_test_r2": 0.5, "trials_complete": 3}, tests)
