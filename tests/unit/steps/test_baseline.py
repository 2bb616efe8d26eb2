"""The baseline step's pure parts: its parameters as a forest, and training on
reference train only."""

import dataclasses

import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.models.families.rf import ForestParams
from mlcycle.steps.baseline import BaselineParams, forest_settings, train
from mlcycle.steps.params.baseline import parse_max_depth


@pytest.mark.parametrize(("text", "depth"), [("", None), ("none", None), ("7", 7)])
def test_max_depth_is_an_integer_or_empty_for_unlimited(text, depth):
    assert parse_max_depth(text) == depth


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_depth": "deep"}, "parameter max_depth must be an integer or empty, got 'deep'"),
        # The depth is read first, as it always was: its message wins over the others.
        ({"max_depth": "2.5", "n_estimators": 0}, "parameter max_depth must be an integer"),
        ({"max_depth": "0"}, "parameter max_depth must be >= 1 or empty, got 0"),
        ({"n_estimators": 0}, "parameter n_estimators must be >= 1, got 0"),
        ({"min_samples_split": 1}, "parameter min_samples_split must be >= 2, got 1"),
        ({"class_weight": "heavy"}, "parameter class_weight must be empty, balanced or"),
        ({"seed": -3}, "parameter seed must be >= 0, got -3"),
    ],
)
def test_bad_parameters_are_one_line_before_any_run(changes, message):
    params = dataclasses.replace(BaselineParams(), **changes)
    with pytest.raises(MlcycleError) as caught:
        params.validate()
    assert str(caught.value).startswith(message)


def test_the_parameters_describe_the_forest_and_the_rest_is_logged_beside_them():
    params = BaselineParams(max_depth="4", class_weight="", n_estimators=9, seed=1)
    assert params.validate().forest() == ForestParams(
        n_estimators=9, max_depth=4, class_weight=None, seed=1
    )
    assert forest_settings(params) == {"max_features": 1.0, "n_jobs": -1}


def test_the_forest_learns_reference_train_only_and_is_scored_on_both_tests():
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=["kind"])

    def frame(kinds, slope):
        x = [float(i) for i in range(len(kinds))]
        return pd.DataFrame({"x": x, "kind": kinds, "y": [slope * v for v in x]})

    splits = Splits(
        reference_train=frame(["a", "b"] * 10, 1.0),
        reference_test=frame(["a", "b"] * 3, 1.0),
        current_train=frame(["c"] * 20, -1.0),  # a category and a slope it must not see
        current_test=frame(["c"] * 6, -1.0),
    )
    model, metrics = train(schema, splits, ForestParams(n_estimators=5, seed=0))
    encoder = model.named_steps["preprocess"].named_transformers_["categorical"]["onehot"]
    assert [list(c) for c in encoder.categories_] == [["a", "b"]]
    assert {"reference_test_r2", "current_test_r2", "current_test_mae"} <= set(metrics)
    assert metrics["reference_test_r2"] > 0.5 > metrics["current_test_r2"]


def test_family_hgb_is_the_boosted_trees_defaults_with_the_steps_seed():
    from mlcycle.models.families.hgb import BoostingParams

    params = BaselineParams(family="hgb", seed=3).validate()
    assert params.model_params() == BoostingParams(seed=3)
    assert forest_settings(params)["hgb.early_stopping"] is True
    assert BaselineParams().model_params() == BaselineParams().forest()
