"""The retrain step's pure parts: base-model checks, strategy choice, training rows,
tuned parameters."""

import dataclasses
import logging

import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.models.network import NetworkParams
from mlcycle.models.retraining import (
    Base,
    choose_strategy,
    comparability,
    training_rows,
    tuned_params,
)
from mlcycle.models.serving import base_mismatch
from mlcycle.steps.retrain import RetrainParams
from tests.unit.networks import BIN, REG


class _Pyfunc:
    """What base_mismatch reads of a loaded pyfunc: its signature and its raw model."""

    def __init__(self, inputs=None, raw=None):
        from mlflow.models import Model, ModelSignature
        from mlflow.types import ColSpec, DataType
        from mlflow.types import Schema as TypeSchema

        self.metadata = Model()
        if inputs is not None:
            self.metadata.signature = ModelSignature(
                TypeSchema([ColSpec(DataType.double, c) for c in inputs])
            )
        self._raw = raw

    def get_raw_model(self):
        if self._raw is None:
            raise ValueError("no raw model")
        return self._raw

    def unwrap_python_model(self):
        raise ValueError("not a custom python model")


def test_base_mismatch_names_task_target_and_missing_columns(bin_model, reg_fit):
    from sklearn.dummy import DummyClassifier, DummyRegressor

    class Network(_Pyfunc):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def unwrap_python_model(self):
            return self

    assert base_mismatch(Network(bin_model), BIN) is None
    assert base_mismatch(Network(reg_fit[0]), REG) is None
    assert "it is a classification model and the data is regression" in base_mismatch(
        Network(bin_model), REG
    )
    other_target = Schema("price", "regression", ["x", "z"], ["c"])
    assert "it predicts 'y', not the data's target 'price'" in base_mismatch(
        Network(reg_fit[0]), other_target
    )
    fewer = Schema("y", "regression", ["x"], ["c"])
    assert base_mismatch(Network(reg_fit[0]), fewer) == "it reads columns the data lacks (z)"
    more = Schema("y", "regression", ["x", "z", "w"], ["c"])
    assert base_mismatch(Network(reg_fit[0]), more) is None  # a new column is no obstacle

    # Any other model: its signature's columns and, for sklearn, its estimator type.
    forest_like = _Pyfunc(["x", "z", "c"], DummyRegressor())
    assert base_mismatch(forest_like, REG) is None
    assert base_mismatch(_Pyfunc(["x", "z", "c"], DummyClassifier()), REG) == (
        "it is a classification model and the data is regression"
    )
    assert base_mismatch(_Pyfunc(["tenure", "x"], DummyClassifier()), REG) == (
        "it is a classification model and the data is regression; "
        "it reads columns the data lacks (tenure)"
    )
    assert base_mismatch(_Pyfunc(), REG) is None  # says nothing: scoring will tell


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"strategy": "warm"},
            "parameter strategy must be one of auto, finetune, transfer, scratch, got 'warm'",
        ),
        ({"window": "last"}, "parameter window must be one of auto, current, all, got 'last'"),
        ({"epochs": 0}, "parameter epochs must be >= 1, got 0"),
        ({"learning_rate": -1.0}, "parameter learning_rate must be > 0, got -1.0"),
    ],
)
def test_bad_parameters_are_one_line_before_any_run(changes, message):
    with pytest.raises(MlcycleError) as caught:
        dataclasses.replace(RetrainParams(), **changes).validate()
    assert str(caught.value) == message


def test_the_step_trains_its_own_budget_with_the_tuned_architecture():
    asked = RetrainParams(epochs=5, patience=0, learning_rate=0.01).network()
    best = {"family": "nn", "hidden_units": [16, 4], "dropout": 0.2, "epochs": 90, "seed": 1}
    tuned = tuned_params(asked, best, "run1")
    assert tuned == dataclasses.replace(asked, hidden_units=(16, 4), dropout=0.2)
    assert (tuned.epochs, tuned.patience, tuned.seed) == (5, 0, 42)
    with pytest.raises(MlcycleError, match="run run2 tuned family 'rf', not a network"):
        tuned_params(asked, {"family": "rf", "n_estimators": 50}, "run2")


# ---------------------------------------------------------------- strategy and rows


def _base(pyfunc=None, network=None):
    return Base(uri="models:/m/1", version="1", pyfunc=pyfunc, network=network)


def test_finetune_continues_a_network_of_this_data_and_falls_back_to_scratch_saying_why(
    bin_model, reg_fit, caplog
):
    caplog.set_level(logging.INFO)
    network = reg_fit[0]
    assert choose_strategy("finetune", _base(network=network), REG) == ("finetune", network)
    assert choose_strategy("scratch", _base(network=network), REG) == ("scratch", None)
    assert choose_strategy("finetune", None, REG) == ("scratch", None)
    assert "no base model, so training from scratch" in caplog.text
    assert choose_strategy("finetune", _base(), REG) == ("scratch", None)
    assert "models:/m/1 is not a network" in caplog.text
    assert choose_strategy("finetune", _base(network=bin_model), REG) == ("scratch", None)
    assert "the base model is a classification network, the data is regression" in caplog.text


def test_a_base_of_other_data_is_refused_for_finetune_and_only_skipped_for_scratch(reg_fit):
    class Network(_Pyfunc):
        def unwrap_python_model(self):
            return self

    wrapped = Network()
    wrapped.model = reg_fit[0]
    assert comparability(None, REG, "finetune", "e1") == (False, None)
    assert comparability(_base(wrapped), REG, "finetune", "e1") == (True, None)
    other = Schema("price", "regression", ["x", "z"], ["c"])
    comparable, reason = comparability(_base(wrapped), other, "scratch", "e1")
    assert not comparable
    assert reason == (
        "base model models:/m/1 does not model the data of etl run e1: it predicts 'y', "
        "not the data's target 'price'; no before_ metrics"
    )
    with pytest.raises(MlcycleError, match="it can be neither fine-tuned nor compared with"):
        comparability(_base(wrapped), other, "finetune", "e1")


def test_window_all_is_reference_train_then_current_train():
    frames = [pd.DataFrame({"x": rows, "y": rows}) for rows in ([1, 2], [3], [4, 5, 6], [7])]
    splits = Splits(*frames)
    assert training_rows(splits, "current")["x"].tolist() == [4, 5, 6]
    assert training_rows(splits, "all")["x"].tolist() == [1, 2, 4, 5, 6]
    assert training_rows(splits, "all").index.tolist() == [0, 1, 2, 3, 4]


def test_retrain_parameters_default_to_the_network_defaults_for_the_architecture():
    assert RetrainParams().network() == NetworkParams()


def test_auto_fine_tunes_only_a_network_of_this_data_and_says_why_not(bin_model, reg_fit, caplog):
    caplog.set_level(logging.INFO)
    network = reg_fit[0]
    assert choose_strategy("auto", _base(network=network), REG) == ("auto", network)
    assert choose_strategy("auto", _base(), REG) == ("auto", None)
    assert "strategy auto: no finetune candidate: the base model models:/m/1 is not a network" in (
        caplog.text
    )
    assert choose_strategy("auto", _base(network=bin_model), REG) == ("auto", None)
    assert choose_strategy("auto", None, REG) == ("auto", None)
    assert choose_strategy("transfer", _base(network=network), REG) == ("transfer", None)


def test_a_base_of_other_data_is_refused_for_auto_as_for_finetune(reg_fit):
    class Network(_Pyfunc):
        def unwrap_python_model(self):
            return self

    wrapped = Network()
    wrapped.model = reg_fit[0]
    other = Schema("price", "regression", ["x", "z"], ["c"])
    with pytest.raises(MlcycleError, match="it can be neither fine-tuned nor compared with"):
        comparability(_base(wrapped), other, "auto", "e1")
    assert comparability(_base(wrapped), other, "transfer", "e1")[0] is False
